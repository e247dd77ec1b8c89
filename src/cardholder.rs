//! The cardholder-facing listener (`listen.widget`): the secure card-details page, and
//! nothing else. `GET <page>?t=<token>` shows it, `POST <page>` reveals the details
//! ([`crate::widget::Widget`] decides everything; this only translates HTTP).
//!
//! The page is served at `/card-details` and, when `widget.public_url` names another path
//! (a prefix added by a proxy in front), at that path too, since the page's form posts
//! there.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};

use crate::http::{Body, Request, Response, read_body};
use crate::state::CardDetailsPage;
use crate::widget::PageResponse;
use crate::widget::config::PAGE_PATH;
use crate::widget::flow::{MAX_FORM_BYTES, token_from_query};

/// The route's name, a metric label.
pub const ROUTE: &str = "card_details";

/// Answers one request; returns the response and the route name.
pub async fn handle(page: &CardDetailsPage, request: Request) -> (Response, &'static str) {
    let path = request.uri().path();
    if path != PAGE_PATH && path != page.form_action() {
        return (plain(StatusCode::NOT_FOUND), "unmatched");
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let answer = match *request.method() {
        Method::GET => {
            let token = token_from_query(request.uri().query());
            page.show(token.as_deref(), now).await
        }
        Method::POST => {
            // Browsers may split cookies over several headers (HTTP/2): all of them count.
            let cookies: Vec<&str> = request.headers().get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
            let cookie_header = (!cookies.is_empty()).then(|| cookies.join("; "));
            match read_body(request, MAX_FORM_BYTES).await {
                Ok((_, body)) => page.reveal(&body, cookie_header.as_deref(), now).await,
                Err(_) => page.unreadable_form(),
            }
        }
        _ => {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED);
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            return (response, ROUTE);
        }
    };
    (into_response(answer), ROUTE)
}

fn into_response(page: PageResponse) -> Response {
    let mut response = Response::new(Body::new(Bytes::from(page.body)));
    *response.status_mut() = page.status;
    for (name, value) in page.headers {
        response.headers_mut().append(name, value);
    }
    response
}

/// A status without a page: not cached, not sniffed.
fn plain(status: StatusCode) -> Response {
    let mut response = crate::http::empty(status);
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
