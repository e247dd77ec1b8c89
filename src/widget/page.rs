//! The card-details pages, rendered on the server, and the headers every widget response
//! carries.
//!
//! Every page works without JavaScript and loads nothing from anywhere: no fonts, no
//! images, no stylesheet files. Its one `<style>` element is allowed by its SHA-256 hash
//! in the Content-Security-Policy, and the optional copy button's one `<script>` the same
//! way; everything else is refused (`default-src 'none'`). Hashes rather than nonces
//! because the pages have no random parts besides the CSRF value: the 410 page is the same
//! bytes for every refusal, which is what lets a test prove it never says why.
//!
//! Every text that comes from data (display name, name on card, token, CSRF value) goes
//! through [`escape`]; the accent colour is accepted only as `#rrggbb` and is the only
//! data inside the `<style>` element.
//!
//! Accessibility: `lang`, one `<h1>`, real `<label>`s, errors announced (`role="alert"`)
//! and tied to their field (`aria-describedby`, `aria-invalid`), text contrast above 7:1,
//! button text black or white, whichever contrasts more with the tenant's colour (at
//! least 4.5:1 for any colour). The card number is real text, four digits to a span with a
//! space between spans, so screen readers read it in groups and a copied selection is the
//! number with spaces, which checkout forms accept. (An `aria-label` on a plain `span` is
//! not read by several screen readers: ARIA gives generic elements no name.)

use std::fmt::Write as _;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::StatusCode;
use http::header::{self, HeaderName, HeaderValue};

use super::cvv::Cvv2;
use crate::ids::Expiry;
use crate::pan::Pan;

/// `text` made safe for HTML text and for double-quoted attribute values: `&`, `<`, `>`,
/// `"` and `'` become character references. Every attribute here is double-quoted.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A tenant's accent colour, exactly `#rrggbb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccentColour([u8; 3]);

/// The default accent: a blue that takes white text at 6.6:1.
const DEFAULT_ACCENT: AccentColour = AccentColour([0x1f, 0x4f, 0xb8]);

impl AccentColour {
    /// `#` and six hexadecimal digits; nothing else (no names, no `rgb()`, no shorthand),
    /// since the value is written into the page's stylesheet.
    pub fn parse(text: &str) -> Result<Self, BrandingError> {
        let hex = text.strip_prefix('#').ok_or(BrandingError::Colour)?;
        let mut rgb = [0u8; 3];
        if hex.len() != 6 || hex::decode_to_slice(hex, &mut rgb).is_err() {
            return Err(BrandingError::Colour);
        }
        Ok(Self(rgb))
    }

    fn css(&self) -> String {
        format!("#{}", hex::encode(self.0))
    }

    /// WCAG 2 relative luminance.
    fn luminance(&self) -> f64 {
        let channel = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
        };
        0.2126 * channel(self.0[0]) + 0.7152 * channel(self.0[1]) + 0.0722 * channel(self.0[2])
    }

    /// Black or white, whichever contrasts more with this colour; either way at least
    /// 4.58:1, since the two contrasts multiply to 21.
    fn text_colour(&self) -> AccentColour {
        let l = self.luminance();
        let with_white = 1.05 / (l + 0.05);
        let with_black = (l + 0.05) / 0.05;
        if with_white >= with_black { AccentColour([0xff; 3]) } else { AccentColour([0; 3]) }
    }
}

/// How a tenant's pages look: an optional display name (shown in a bar at the top and in
/// the title) and an accent colour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branding {
    display_name: Option<String>,
    accent: AccentColour,
}

impl Default for Branding {
    fn default() -> Self {
        Self { display_name: None, accent: DEFAULT_ACCENT }
    }
}

/// A branding setting the page will not render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BrandingError {
    #[error("accent colour must be #rrggbb")]
    Colour,
    #[error("display name must be 1 to 64 characters without control characters")]
    DisplayName,
}

impl Branding {
    pub fn new(display_name: Option<&str>, accent_colour: Option<&str>) -> Result<Self, BrandingError> {
        let display_name = match display_name.map(str::trim) {
            None => None,
            Some(n) if n.is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) => {
                return Err(BrandingError::DisplayName);
            }
            Some(n) => Some(n.to_owned()),
        };
        let accent = accent_colour.map(AccentColour::parse).transpose()?.unwrap_or(DEFAULT_ACCENT);
        Ok(Self { display_name, accent })
    }
}

/// `frame-ancestors`: who may show the page inside a frame. None by default; an app whose
/// own web content frames the page lists that origin. Only `'self'` and `https://` origins
/// (a leading `*.` allowed) are accepted: anything else could break out of the header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FrameAncestors(Vec<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("frame ancestor `{0}` is not 'self', 'none' or an https:// origin")]
pub struct FrameAncestorsError(pub String);

impl FrameAncestors {
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// From the configured list. An empty list, or `'none'` alone, is none.
    pub fn parse<S: AsRef<str>>(sources: &[S]) -> Result<Self, FrameAncestorsError> {
        let mut out = Vec::new();
        for source in sources {
            let s = source.as_ref().trim();
            if s == "'none'" && sources.len() == 1 {
                return Ok(Self::none());
            }
            if s != "'self'" && !is_https_origin(s) {
                return Err(FrameAncestorsError(s.to_owned()));
            }
            out.push(s.to_owned());
        }
        Ok(Self(out))
    }

    fn directive(&self) -> String {
        if self.0.is_empty() { "frame-ancestors 'none'".to_owned() } else { format!("frame-ancestors {}", self.0.join(" ")) }
    }
}

fn is_https_origin(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("https://") else { return false };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    if port.is_some_and(|p| p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    let host = host.strip_prefix("*.").unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// The path the page's forms post to (the reveal route). Same origin only: it must start
/// with a single `/` and hold only path characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormAction(String);

impl Default for FormAction {
    fn default() -> Self {
        Self("/card-details".to_owned())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("form action must be a path on this site, like /card-details")]
pub struct FormActionError;

impl FormAction {
    pub fn parse(path: &str) -> Result<Self, FormActionError> {
        let ok = path.starts_with('/')
            && !path.starts_with("//")
            && path.len() <= 200
            && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b));
        if ok { Ok(Self(path.to_owned())) } else { Err(FormActionError) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A response, ready for the HTTP layer: status, headers (security headers included,
/// `Set-Cookie` when there is one) and the HTML. `Debug` shows the body's size only, since
/// the details page holds a card number.
#[derive(Clone, PartialEq, Eq)]
pub struct PageResponse {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: String,
}

impl std::fmt::Debug for PageResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// The headers every widget response needs, whatever its body: no caching anywhere, no
/// referrer, no MIME sniffing, and a Content-Security-Policy that allows exactly the
/// inline style and scripts whose hashes are given (as `sha256-<base64>`), posting forms
/// to this origin only, and framing by `frame_ancestors` only.
pub fn security_headers(
    frame_ancestors: &FrameAncestors,
    style_hashes: &[String],
    script_hashes: &[String],
) -> Vec<(HeaderName, HeaderValue)> {
    let mut csp = String::from("default-src 'none'");
    for (directive, hashes) in [("style-src", style_hashes), ("script-src", script_hashes)] {
        if !hashes.is_empty() {
            let _ = write!(csp, "; {directive}");
            for h in hashes {
                let _ = write!(csp, " '{h}'");
            }
        }
    }
    let _ = write!(
        csp,
        "; form-action 'self'; base-uri 'none'; {}; require-trusted-types-for 'script'; trusted-types 'none'",
        frame_ancestors.directive()
    );
    let mut headers = vec![
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_str(&csp).expect("validated sources and base64 hashes are header-safe")),
        (HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin")),
        (HeaderName::from_static("cross-origin-resource-policy"), HeaderValue::from_static("same-origin")),
        (HeaderName::from_static("x-robots-tag"), HeaderValue::from_static("noindex, nofollow")),
    ];
    if frame_ancestors.0.is_empty() {
        // For browsers that predate frame-ancestors.
        headers.push((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")));
    }
    headers
}

/// A rendered page before its headers: the HTML and the hashes its CSP must allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Html {
    pub status: StatusCode,
    body: String,
    style_hashes: Vec<String>,
    script_hashes: Vec<String>,
}

impl Html {
    /// The response: `Content-Type`, the security headers, and `set_cookie` if any.
    pub fn into_response(self, frame_ancestors: &FrameAncestors, set_cookie: Option<String>) -> PageResponse {
        let mut headers = vec![(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))];
        headers.extend(security_headers(frame_ancestors, &self.style_hashes, &self.script_hashes));
        if let Some(cookie) = set_cookie {
            headers.push((header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("cookie values are base64url")));
        }
        PageResponse { status: self.status, headers, body: self.body }
    }

    pub fn body(&self) -> &str {
        &self.body
    }
}

/// What the pages of one tenant need to know.
#[derive(Debug, Clone, Copy)]
pub struct PageContext<'a> {
    pub branding: &'a Branding,
    pub form_action: &'a FormAction,
    pub copy_button: bool,
}

/// A message above the form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The CSRF check failed (an old page, a cookie lost): the cardholder simply presses
    /// again on this fresh page.
    PressAgain,
}

/// Why the date-of-birth form is shown again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DobProblem {
    /// Not a date in the expected form: not counted as a try.
    Unreadable,
    /// A real date, not the one on file: counted.
    NoMatch,
}

const CSS: &str = "*{box-sizing:border-box}\
body{margin:0;background:#f4f5f7;color:#1a1a1a;font:1rem/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,Helvetica,Arial,sans-serif;-webkit-text-size-adjust:100%}\
.brand{margin:0;padding:.75rem 1rem;background:var(--accent);color:var(--on-accent);font-weight:600}\
main{max-width:32rem;margin:0 auto;padding:1.5rem 1rem 2.5rem}\
h1{font-size:1.375rem;line-height:1.3;margin:0 0 1rem}\
p{margin:0 0 1rem}\
.small,.hint{font-size:.9375rem;color:#474747}\
form{margin:1.5rem 0}\
label{display:block;font-weight:600;margin:0 0 .25rem}\
fieldset{margin:0 0 1.5rem;padding:0;border:0}\
legend{padding:0;margin:0 0 .25rem;font-size:1.125rem;font-weight:600}\
.date{display:flex;gap:1rem}\
.date label{font-weight:400}\
.w2{width:4rem}\
.w4{width:6rem}\
.nw{white-space:nowrap}\
input{display:block;width:100%;margin:0;padding:.625rem .75rem;font:inherit;color:#1a1a1a;background:#fff;border:2px solid #5c5c5c;border-radius:.375rem}\
input[aria-invalid=true]{border-color:#a4000f}\
button{display:block;width:100%;min-height:3rem;padding:.75rem 1.25rem;font:inherit;font-weight:600;color:var(--on-accent);background:var(--accent);border:0;border-radius:.5rem;cursor:pointer}\
button:focus-visible,input:focus-visible{outline:3px solid #1a1a1a;outline-offset:3px}\
.alert{padding:.75rem 1rem;border-left:.3rem solid #a4000f;background:#fff;color:#a4000f;font-weight:600}\
.notice{padding:.75rem 1rem;border-left:.3rem solid #1a1a1a;background:#fff}\
.card{margin:0 0 1.5rem;padding:1.25rem 1rem;background:#fff;border:1px solid #c4c7cc;border-top:.4rem solid var(--accent);border-radius:.75rem}\
dl{margin:0}\
dt{margin:1rem 0 0;font-size:.9375rem;color:#474747}\
dt:first-child{margin-top:0}\
dd{margin:0;font-size:1.25rem;font-weight:600;font-variant-numeric:tabular-nums}\
.pan{font:600 1.5rem/1.4 ui-monospace,\"SF Mono\",Menlo,Consolas,\"Liberation Mono\",monospace;word-spacing:.1em}\
.pan span{white-space:nowrap}\
.row{display:flex;flex-wrap:wrap;gap:0 2.5rem;margin-top:1rem}\
.copy{margin:1.25rem 0 0}\
.copy button{width:auto;min-height:2.75rem;color:#1a1a1a;background:#fff;border:2px solid #1a1a1a}\
#copy-status{min-height:1.5em;margin:.5rem 0 0}\
@media (min-width:40rem){main{padding-top:3rem}h1{font-size:1.75rem}form button{width:auto;min-width:18rem}}";

/// Shows the copy button (hidden, with its status line, without JavaScript or a
/// clipboard) and copies the number's digits.
/// Uses no HTML sinks, so it runs under `trusted-types 'none'`.
const COPY_SCRIPT: &str = "(function(){var c=document.getElementById('copy-box'),b=document.getElementById('copy'),\
s=document.getElementById('copy-status');if(!c||!b||!s||!navigator.clipboard)return;c.hidden=false;b.addEventListener('click',function(){\
var d=Array.prototype.map.call(document.querySelectorAll('.pan span'),function(e){return e.textContent}).join('');\
navigator.clipboard.writeText(d).then(function(){s.textContent='Card number copied.'},\
function(){s.textContent='Could not copy. Select the number instead.'})})})();";

fn csp_hash(content: &str) -> String {
    format!("sha256-{}", B64.encode(digest::digest(&digest::SHA256, content.as_bytes())))
}

/// The whole document around `main`.
fn document(status: StatusCode, title: &str, branding: &Branding, main: &str, script: Option<&str>) -> Html {
    let style =
        format!(":root{{--accent:{};--on-accent:{};color-scheme:light}}{CSS}", branding.accent.css(), branding.accent.text_colour().css());
    let full_title = match &branding.display_name {
        Some(name) => format!("{title} – {name}"),
        None => title.to_owned(),
    };
    let mut body = String::with_capacity(4096 + style.len());
    let _ = write!(
        body,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<meta name=\"robots\" content=\"noindex, nofollow\">\n<meta name=\"referrer\" content=\"no-referrer\">\n\
<title>{}</title>\n<style>{style}</style>\n</head>\n<body>\n",
        escape(&full_title)
    );
    if let Some(name) = &branding.display_name {
        let _ = writeln!(body, "<header><p class=\"brand\">{}</p></header>", escape(name));
    }
    let _ = write!(body, "<main>\n{main}</main>\n");
    let mut script_hashes = Vec::new();
    if let Some(script) = script {
        let _ = writeln!(body, "<script>{script}</script>");
        script_hashes.push(csp_hash(script));
    }
    body.push_str("</body>\n</html>\n");
    Html { status, body, style_hashes: vec![csp_hash(&style)], script_hashes }
}

fn hidden_fields(token: &str, csrf_field: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"t\" value=\"{}\">\n<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
        escape(token),
        super::csrf::FIELD_NAME,
        escape(csrf_field)
    )
}

/// The first page of a link without a date of birth: one button.
pub fn landing(ctx: &PageContext<'_>, status: StatusCode, token: &str, csrf_field: &str, notice: Option<Notice>) -> Html {
    let mut main = String::from("<h1>Your card details</h1>\n");
    if notice == Some(Notice::PressAgain) {
        main.push_str("<p class=\"notice\" role=\"alert\">For your security, please press the button again.</p>\n");
    }
    main.push_str(
        "<p>Press the button to see your card number, expiry date and security code. \
This link works once: after the details are shown, it cannot show them again.</p>\n",
    );
    let _ = write!(
        main,
        "<form method=\"post\" action=\"{}\">\n{}<button type=\"submit\">Show card details</button>\n</form>\n\
<p class=\"small\">Make sure nobody can see your screen.</p>\n",
        escape(ctx.form_action.as_str()),
        hidden_fields(token, csrf_field)
    );
    document(status, "Your card details", ctx.branding, &main, None)
}

/// The first page of a link with a date of birth: the date as three labelled fields
/// (day, month, year) in a fieldset, and the tries left.
///
/// Three text fields rather than `<input type="date">`: a browser's date picker shows
/// the date in the device's locale (`mm/dd/yyyy` or `dd/mm/yyyy`), is slow for a date
/// decades back, and degrades to a free text field where it is missing; separate
/// numeric fields read the same everywhere and need no hint about the format. (The
/// GOV.UK Design System's "Date input" pattern, recommended there for dates of birth.)
pub fn date_of_birth(
    ctx: &PageContext<'_>,
    status: StatusCode,
    token: &str,
    csrf_field: &str,
    tries_left: u8,
    problem: Option<DobProblem>,
    notice: Option<Notice>,
) -> Html {
    let mut main = String::from("<h1>Confirm it is you</h1>\n");
    if notice == Some(Notice::PressAgain) {
        main.push_str("<p class=\"notice\" role=\"alert\">For your security, please enter your date of birth again.</p>\n");
    }
    main.push_str("<p>Enter your date of birth to see your card details.</p>\n");
    let error = match problem {
        Some(DobProblem::Unreadable) => Some("Enter a real date: day, month and year, for example <span class=\"nw\">17 5 1990</span>."),
        Some(DobProblem::NoMatch) => Some("That date of birth does not match our records."),
        None => None,
    };
    let tries = if tries_left == 1 { "1 try".to_owned() } else { format!("{tries_left} tries") };
    let _ = write!(main, "<form method=\"post\" action=\"{}\">\n{}", escape(ctx.form_action.as_str()), hidden_fields(token, csrf_field));
    let mut described_by = String::from("dob-hint");
    if error.is_some() {
        described_by.push_str(" dob-error");
    }
    let _ = write!(
        main,
        "<fieldset aria-describedby=\"{described_by}\">\n<legend>Date of birth</legend>\n\
<p class=\"hint\" id=\"dob-hint\">For example, <span class=\"nw\">17 5 1990</span>. You have {tries} left; \
after that this link stops working.</p>\n"
    );
    if let Some(error) = error {
        let _ = writeln!(main, "<p class=\"alert\" role=\"alert\" id=\"dob-error\">{error}</p>");
    }
    main.push_str("<div class=\"date\">\n");
    let invalid = if error.is_some() { " aria-invalid=\"true\"" } else { "" };
    for (i, (part, label, width)) in [("day", "Day", 2), ("month", "Month", 2), ("year", "Year", 4)].into_iter().enumerate() {
        // After an error the cursor goes back to the first field.
        let focus = if i == 0 && error.is_some() { " autofocus" } else { "" };
        let _ = writeln!(
            main,
            "<div class=\"w{width}\"><label for=\"dob-{part}\">{label}</label>\
<input type=\"text\" id=\"dob-{part}\" name=\"dob-{part}\" inputmode=\"numeric\" maxlength=\"{width}\" \
autocomplete=\"bday-{part}\" required{invalid}{focus}></div>"
        );
    }
    main.push_str("</div>\n</fieldset>\n<button type=\"submit\">Show card details</button>\n</form>\n");
    document(status, "Confirm it is you", ctx.branding, &main, None)
}

/// The details: card number in groups of four, expiry `MM/YY`, CVV2, and the name on the
/// card when known.
pub fn details(ctx: &PageContext<'_>, pan: &Pan, expiry: Expiry, name_on_card: Option<&str>, cvv: &Cvv2) -> Html {
    let digits = super::pan_digits(pan);
    let mut groups = String::new();
    for (i, chunk) in digits.as_bytes().chunks(4).enumerate() {
        if i > 0 {
            groups.push(' ');
        }
        let _ = write!(groups, "<span>{}</span>", escape(std::str::from_utf8(chunk).unwrap_or_default()));
    }
    let mut main = String::from("<h1>Your card details</h1>\n<div class=\"card\">\n<dl>\n");
    if let Some(name) = name_on_card {
        let _ = writeln!(main, "<dt>Name on card</dt>\n<dd>{}</dd>", escape(name));
    }
    let _ = writeln!(main, "<dt>Card number</dt>\n<dd class=\"pan\">{groups}</dd>\n</dl>");
    let _ = write!(
        main,
        "<dl class=\"row\">\n<div><dt>Expiry date</dt>\n<dd>{}</dd></div>\n<div><dt>Security code (CVV)</dt>\n<dd>{}</dd></div>\n</dl>\n",
        escape(&expiry.mm_yy()),
        escape(cvv.expose_for_display())
    );
    if ctx.copy_button {
        main.push_str(
            "<div class=\"copy\" id=\"copy-box\" hidden><button type=\"button\" id=\"copy\">Copy card number</button>\
<p id=\"copy-status\" class=\"small\" role=\"status\"></p></div>\n",
        );
    }
    main.push_str("</div>\n<p>Do not share these details with anyone. This page cannot be shown again: close it when you are done.</p>\n");
    document(StatusCode::OK, "Your card details", ctx.branding, &main, ctx.copy_button.then_some(COPY_SCRIPT))
}

/// The one page for a link that cannot be used, whatever the reason: 410, unbranded (a
/// tampered token names no tenant), the same bytes every time.
pub fn gone() -> Html {
    document(
        StatusCode::GONE,
        "This link has expired or was already used",
        &Branding::default(),
        "<h1>This link has expired or was already used</h1>\n\
<p>For your security, a link to your card details works only once and only for a few minutes.</p>\n\
<p>To see your card details, open them again from your banking app.</p>\n",
        None,
    )
}

/// Our own failure (database or key service unreachable): nothing was used up, so the
/// cardholder may simply try again.
pub fn unavailable() -> Html {
    document(
        StatusCode::SERVICE_UNAVAILABLE,
        "Card details are unavailable",
        &Branding::default(),
        "<h1>Card details are unavailable right now</h1>\n\
<p>Nothing has been shown and your link has not been used. Please go back and try again in a moment.</p>\n",
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ctx(branding: &Branding) -> PageContext<'_> {
        static ACTION: std::sync::OnceLock<FormAction> = std::sync::OnceLock::new();
        PageContext { branding, form_action: ACTION.get_or_init(FormAction::default), copy_button: true }
    }

    fn contrast(a: AccentColour, b: AccentColour) -> f64 {
        let (x, y) = (a.luminance(), b.luminance());
        (x.max(y) + 0.05) / (x.min(y) + 0.05)
    }

    fn header<'a>(response: &'a PageResponse, name: &str) -> Vec<&'a str> {
        response.headers.iter().filter(|(n, _)| n.as_str() == name).map(|(_, v)| v.to_str().unwrap()).collect()
    }

    /// The value of the first `style` or `script` element.
    fn element<'a>(html: &'a str, tag: &str) -> &'a str {
        let start = html.find(&format!("<{tag}>")).unwrap() + tag.len() + 2;
        let end = html[start..].find(&format!("</{tag}>")).unwrap();
        &html[start..start + end]
    }

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(escape(r#"<a href="x" onclick='y'>&amp;</a>"#), "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;");
        assert_eq!(escape("Zoë’s Bank"), "Zoë’s Bank");
    }

    #[test]
    fn branding_is_validated_and_escaped() {
        assert_eq!(AccentColour::parse("#00aaFF").unwrap().css(), "#00aaff");
        for bad in ["00aaff", "#0af", "#00aaff;", "red", "#00aafg", "#00aaff00", "rgb(0,0,0)", "#ｆｆｆｆｆｆ", ""] {
            assert_eq!(AccentColour::parse(bad), Err(BrandingError::Colour), "{bad:?}");
        }
        assert_eq!(Branding::new(Some(""), None), Err(BrandingError::DisplayName));
        assert_eq!(Branding::new(Some("a\nb"), None), Err(BrandingError::DisplayName));
        assert_eq!(Branding::new(Some(&"x".repeat(65)), None), Err(BrandingError::DisplayName));
        let evil = Branding::new(Some("</title><script>alert(1)</script>\"'"), Some("#ffcc00")).unwrap();
        let html = landing(&ctx(&evil), StatusCode::OK, "k1.abc\"><x", "c\"'<", None);
        assert!(!html.body().contains("<script>alert"), "{}", html.body());
        assert!(html.body().contains("&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;"));
        assert!(html.body().contains("value=\"k1.abc&quot;&gt;&lt;x\""));
        assert!(html.body().contains("value=\"c&quot;&#39;&lt;\""));
        // A light accent gets black text on its buttons.
        assert!(element(html.body(), "style").starts_with(":root{--accent:#ffcc00;--on-accent:#000000;"));
    }

    #[test]
    fn button_text_contrasts_with_any_accent() {
        for rgb in [
            [0u8, 0, 0],
            [255, 255, 255],
            [255, 255, 0],
            [0x1f, 0x4f, 0xb8],
            [0x77, 0x77, 0x77],
            [0x76, 0x76, 0x76],
            [255, 0, 0],
            [0, 128, 0],
        ] {
            let accent = AccentColour(rgb);
            let ratio = contrast(accent, accent.text_colour());
            assert!(ratio >= 4.5, "{rgb:?}: {ratio}");
        }
        assert!(contrast(DEFAULT_ACCENT, AccentColour([255; 3])) >= 4.5);
        assert_eq!(DEFAULT_ACCENT.text_colour(), AccentColour([255; 3]));
    }

    #[test]
    fn frame_ancestors_and_form_action_are_strict() {
        assert_eq!(FrameAncestors::parse::<&str>(&[]).unwrap().directive(), "frame-ancestors 'none'");
        assert_eq!(FrameAncestors::parse(&["'none'"]).unwrap().directive(), "frame-ancestors 'none'");
        let ok = FrameAncestors::parse(&["'self'", "https://app.bank.example", "https://*.bank.example:8443"]).unwrap();
        assert_eq!(ok.directive(), "frame-ancestors 'self' https://app.bank.example https://*.bank.example:8443");
        for bad in [
            "*",
            "http://app.example",
            "https://app.example/path",
            "https://a.example; script-src *",
            "'unsafe-inline'",
            "https://",
            "https://A.example",
            "'none'x",
            "data:",
        ] {
            assert!(FrameAncestors::parse(&[bad]).is_err(), "{bad:?}");
        }
        assert!(FrameAncestors::parse(&["'none'", "'self'"]).is_err());
        assert!(FormAction::parse("/card-details").is_ok());
        for bad in ["card", "//evil.example/x", "/a b", "/a\"b", "/a?b", "https://x/y", ""] {
            assert_eq!(FormAction::parse(bad), Err(FormActionError), "{bad:?}");
        }
    }

    #[test]
    fn csp_allows_exactly_the_page_own_style_and_script() {
        let branding = Branding::new(Some("Example Bank"), Some("#0b6e4f")).unwrap();
        let pan = Pan::parse("4111111111111111").unwrap();
        let html =
            details(&ctx(&branding), &pan, Expiry::parse("2029-07").unwrap(), Some("A CARDHOLDER"), &Cvv2::from_digits("042").unwrap());
        let style_hash = csp_hash(element(html.body(), "style"));
        let script_hash = csp_hash(element(html.body(), "script"));
        let response = html.into_response(&FrameAncestors::none(), None);
        let [csp] = header(&response, "content-security-policy")[..] else { panic!("one CSP") };
        assert_eq!(
            csp,
            format!(
                "default-src 'none'; style-src '{style_hash}'; script-src '{script_hash}'; form-action 'self'; base-uri 'none'; \
frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"
            )
        );
        assert_eq!(header(&response, "cache-control"), ["no-store"]);
        assert_eq!(header(&response, "referrer-policy"), ["no-referrer"]);
        assert_eq!(header(&response, "x-content-type-options"), ["nosniff"]);
        assert_eq!(header(&response, "x-frame-options"), ["DENY"]);
        assert_eq!(header(&response, "content-type"), ["text/html; charset=utf-8"]);
        // No inline style attributes or event handlers, which the CSP would block; no
        // outside resources.
        assert!(!response.body.contains(" style=") && !response.body.contains(" onclick="));
        assert!(!response.body.contains("http://") && !response.body.contains("https://") && !response.body.contains("url("));
        // Without the copy button there is no script and no script-src.
        let plain = PageContext { copy_button: false, ..ctx(&branding) };
        let html = details(&plain, &pan, Expiry::parse("2029-07").unwrap(), None, &Cvv2::from_digits("042").unwrap());
        assert!(!html.body().contains("<script"));
        let response = html.into_response(&FrameAncestors::parse(&["https://app.bank.example"]).unwrap(), None);
        let csp = header(&response, "content-security-policy")[0];
        assert!(!csp.contains("script-src") && csp.contains("frame-ancestors https://app.bank.example"), "{csp}");
        assert!(header(&response, "x-frame-options").is_empty());
    }

    #[test]
    fn details_show_grouped_number_expiry_cvv_and_name() {
        let branding = Branding::default();
        let pan = Pan::parse("4111111111111111").unwrap();
        let html =
            details(&ctx(&branding), &pan, Expiry::parse("2029-07").unwrap(), Some("Ada O'Neil"), &Cvv2::from_digits("042").unwrap());
        let body = html.body();
        assert!(body.contains("<dd class=\"pan\"><span>4111</span> <span>1111</span> <span>1111</span> <span>1111</span></dd>"), "{body}");
        assert!(body.contains("<dd>07/29</dd>") && body.contains("<dd>042</dd>") && body.contains("<dd>Ada O&#39;Neil</dd>"));
        assert!(body.contains("<html lang=\"en\">") && body.contains("name=\"viewport\""));
        // The copy button is hidden until the script shows it.
        assert!(body.contains("<div class=\"copy\" id=\"copy-box\" hidden><button type=\"button\" id=\"copy\">"));
        // A 19-digit number ends with a group of three.
        let long = Pan::parse("4000000000000000006").unwrap();
        let html = details(&ctx(&branding), &long, Expiry::parse("2029-07").unwrap(), None, &Cvv2::from_digits("100").unwrap());
        assert!(html.body().contains("<span>0000</span> <span>006</span></dd>"));
        assert!(!html.body().contains("Name on card"));
        assert!(!format!("{:?}", html.clone().into_response(&FrameAncestors::none(), None)).contains("4000"));
    }

    #[test]
    fn date_of_birth_page_labels_its_field_and_announces_errors() {
        let branding = Branding::default();
        let first = date_of_birth(&ctx(&branding), StatusCode::OK, "tok", "csrf", 3, None, None);
        let body = first.body();
        assert!(body.contains("<legend>Date of birth</legend>"));
        for part in ["day", "month", "year"] {
            assert!(
                body.contains(&format!("<label for=\"dob-{part}\">")) && body.contains(&format!("id=\"dob-{part}\" name=\"dob-{part}\""))
            );
        }
        let main = &body[body.find("<main>").unwrap()..];
        assert!(main.contains("You have 3 tries left") && !main.contains("role=\"alert\"") && !main.contains("aria-invalid"));
        let wrong = date_of_birth(&ctx(&branding), StatusCode::OK, "tok", "csrf", 1, Some(DobProblem::NoMatch), None);
        let body = wrong.body();
        assert!(body.contains("You have 1 try left") && body.contains("role=\"alert\" id=\"dob-error\""));
        assert!(body.contains("<fieldset aria-describedby=\"dob-hint dob-error\">"));
        assert_eq!(body.matches("aria-invalid=\"true\"").count(), 3);
        assert_eq!(body.matches("autofocus").count(), 1);
    }

    #[test]
    fn refusal_pages_are_fixed() {
        assert_eq!(gone(), gone());
        assert_eq!(gone().status, StatusCode::GONE);
        assert!(gone().body().contains("This link has expired or was already used"));
        assert_eq!(unavailable().status, StatusCode::SERVICE_UNAVAILABLE);
    }

    proptest! {
        /// Escaped text holds no markup character, and reading the references back gives
        /// the text.
        #[test]
        fn escape_is_complete_and_reversible(text in "\\PC{0,200}") {
            let e = escape(&text);
            prop_assert!(!e.contains(['<', '>', '"', '\'']));
            let back = e.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&");
            prop_assert_eq!(back, text);
        }

        /// Any display name either is refused or appears in the page only escaped.
        #[test]
        fn any_display_name_renders_safely(name in "\\PC{1,64}") {
            if let Ok(branding) = Branding::new(Some(&name), None) {
                let html = gone_with(&branding);
                let inside = html.split("<main>").next().unwrap();
                prop_assert!(!inside.contains("<script") && inside.matches("<title>").count() == 1);
            }
        }
    }

    fn gone_with(branding: &Branding) -> String {
        landing(&ctx(branding), StatusCode::OK, "t", "c", None).body
    }
}
