//! The internal API as the issuer's services call it: a bearer token for some tenants,
//! the `TENANT` header, M2P's envelope back.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ctp_issuer::auth::{dev_secret_path, mint_token};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::http::{Reply, request};
use super::until;

/// A client of the internal API.
#[derive(Clone)]
pub struct Api {
    pub addr: SocketAddr,
    pub token: String,
    /// The tenant sent when a call names none.
    pub tenant: String,
}

impl Api {
    /// A client whose token, signed with the development HS256 secret under `keys_dir`,
    /// allows `tenants`; it calls for the first of them.
    pub fn new(addr: SocketAddr, keys_dir: &Path, tenants: &[&str]) -> Self {
        let owned: Vec<String> = tenants.iter().map(|t| t.to_string()).collect();
        let token = mint_token(&dev_secret_path(keys_dir), &owned, "test", Duration::from_secs(600)).unwrap();
        Self { addr, token, tenant: tenants[0].to_owned() }
    }

    /// A client with a token made elsewhere (the binary's `token` command, say), calling
    /// for `tenant`.
    pub fn with_token(addr: SocketAddr, token: String, tenant: &str) -> Self {
        Self { addr, token, tenant: tenant.to_owned() }
    }

    /// One call with everything chosen: tenant, extra headers, body (`null`: none).
    pub async fn send(&self, method: Method, path: &str, tenant: &str, extra: &[(&str, &str)], body: &Value) -> Reply {
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![("authorization", auth.as_str()), ("tenant", tenant)];
        headers.extend_from_slice(extra);
        let body = if body.is_null() { String::new() } else { body.to_string() };
        request(self.addr, method, path, &headers, body).await
    }

    pub async fn call_with(&self, method: Method, path: &str, tenant: &str, extra: &[(&str, &str)], body: Value) -> (StatusCode, Value) {
        let reply = self.send(method, path, tenant, extra, &body).await;
        (reply.status, reply.json())
    }

    pub async fn call(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        self.call_with(method, path, &self.tenant.clone(), &[], body).await
    }

    /// `POST /click-to-pay/v1/<name>`.
    pub async fn op(&self, name: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, &format!("/click-to-pay/v1/{name}"), body).await
    }

    /// The entity as `GET /registry/v1/entities/{id}` answers it (its `result`).
    pub async fn entity(&self, id: &str) -> Value {
        let (status, body) = self.call(Method::GET, &format!("/registry/v1/entities/{id}"), Value::Null).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["result"].clone()
    }

    /// Waits until the entity (and optionally a kit) reach the given statuses.
    pub async fn wait_for(&self, id: &str, entity_status: &str, kit: Option<(&str, &str)>) -> Value {
        let what = format!("entity {id} {entity_status}, kit {kit:?}");
        until(&what, Duration::from_secs(20), || async {
            let e = self.entity(id).await;
            let kit_ok = kit.is_none_or(|(k, s)| e["kits"].as_array().unwrap().iter().any(|x| x["kitNo"] == k && x["ctpStatus"] == s));
            (e["ctpStatus"] == entity_status && kit_ok).then_some(e)
        })
        .await
    }

    /// A customer with a complete profile and the given `(kitNo, card number)`s.
    pub async fn put_customer(&self, id: &str, kits: &[(&str, &str)]) {
        let (status, body) = self.call(Method::PUT, &format!("/registry/v1/entities/{id}"), profile("alex@example.com")).await;
        assert!(status.is_success(), "{body}");
        for (kit, pan) in kits {
            let (status, body) = self
                .call(
                    Method::PUT,
                    &format!("/registry/v1/entities/{id}/kits/{kit}"),
                    json!({"pan": pan, "expiry": "2030-01", "nameOnCard": "ALEX MILLER"}),
                )
                .await;
            assert!(status.is_success(), "{body}");
            assert_eq!(body["result"]["last4"], &pan[pan.len() - 4..], "the answer shows the last four digits: {body}");
            assert!(!body.to_string().contains(pan), "a card number came back");
        }
    }
}

/// A complete customer profile (ready for registration) with this email.
pub fn profile(email: &str) -> Value {
    json!({
        "firstName": "Alex", "lastName": "Miller",
        "emails": [email], "phones": ["+14155550100"],
        "locale": "en_US", "countryCode": "USA",
        "consent": {"timeOfConsent": "2024-05-05T12:12:12.000Z", "version": "1.0", "presenter": "Demo Bank"},
        "billingAddress": {"addressLine1": "1000 Market Street", "city": "San Francisco", "state": "CA", "postalCode": "94105", "country": "USA"}
    })
}
