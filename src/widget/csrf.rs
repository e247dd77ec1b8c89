//! The CSRF check on the reveal: the POST must come from a page we rendered, in the
//! browser we rendered it for.
//!
//! The link token already is the capability (whoever has the URL can open the page), so
//! this check is not what keeps a stranger out. What it stops is the reveal, or a wrong
//! date of birth that burns the link, happening anywhere but in the browser that loaded
//! our page: a cross-site form posting a stolen token, a scanner that submits forms, an
//! injected cookie.
//!
//! The design is the double submit, with the value bound to the link:
//!
//! - Each rendering of the landing or date-of-birth page draws 32 random bytes `r`.
//! - The cookie ([`CookieScheme::name`]) holds `base64url(r)`: `HttpOnly` (no script reads
//!   it), `SameSite=Strict` (a cross-site request never carries it), and it lives as long
//!   as a link. When the page is served over HTTPS it is also `Secure` and named with the
//!   `__Host-` prefix (so no other host or path can set it); see [`CookieScheme`].
//! - The hidden form field [`FIELD_NAME`] holds `base64url(r) "." base64url(HMAC(k, link
//!   hash ‖ r))`, with `k` derived from the link's hash key.
//! - The POST is accepted only when the cookie's `r` equals the field's (compared in
//!   constant time) and the field's MAC is right for the link being revealed. The MAC
//!   makes a planted cookie useless (its owner cannot make the matching field) and keeps a
//!   pair rendered for one link from being used with another.
//!
//! The GET sets the cookie and changes nothing else, so a link preview that fetches the
//! page uses nothing up. Framing from another site (see `widget.frame_ancestors`) gets no
//! `SameSite=Strict` cookie and so cannot reveal: the page is for top-level web views and
//! same-site frames.

use std::fmt;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use zeroize::Zeroizing;

use super::link::{LinkClaims, LinkKeys};

/// Which cookie carries the random half, by the scheme the cardholder's browser sees.
///
/// Over HTTPS it is `__Host-ctp-widget-csrf`, `Secure`: the prefix makes browsers refuse
/// it unless it is `Secure`, has `Path=/` and no `Domain`, so a sibling host cannot plant
/// one. Over plain HTTP (the loopback development default) it is `ctp-widget-csrf`,
/// without `Secure`: a browser stores a `Secure` cookie only from what it counts as a
/// secure origin. Chromium counts `http://127.0.0.1`, not every browser does, and none
/// counts a plain-http address of another host; where the cookie is dropped, every press
/// would fail the check. The MAC, not the prefix, is what makes a planted cookie useless,
/// so the check is as strong either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieScheme {
    Https,
    Http,
}

impl CookieScheme {
    pub fn name(self) -> &'static str {
        match self {
            Self::Https => "__Host-ctp-widget-csrf",
            Self::Http => "ctp-widget-csrf",
        }
    }

    fn attributes(self) -> &'static str {
        match self {
            Self::Https => "Path=/; Secure; HttpOnly; SameSite=Strict",
            Self::Http => "Path=/; HttpOnly; SameSite=Strict",
        }
    }
}

/// The hidden form field's name.
pub const FIELD_NAME: &str = "csrf";

const RANDOM_BYTES: usize = 32;

/// Cookie entries looked at: a handful is normal, more only costs comparisons.
const MAX_COOKIES: usize = 32;

/// One rendering's pair: the cookie value and the form field value.
pub struct CsrfPair {
    cookie: String,
    field: String,
}

impl fmt::Debug for CsrfPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfPair([REDACTED])")
    }
}

impl CsrfPair {
    /// A fresh pair for the link `claims` names.
    pub fn new(keys: &LinkKeys, claims: &LinkClaims) -> Self {
        let mut r = Zeroizing::new([0u8; RANDOM_BYTES]);
        aws_lc_rs::rand::fill(r.as_mut()).expect("system random source");
        let tag = hmac::sign(keys.csrf_key(claims), &mac_input(claims, r.as_ref()));
        let cookie = B64URL.encode(r.as_ref());
        let field = format!("{cookie}.{}", B64URL.encode(tag.as_ref()));
        Self { cookie, field }
    }

    /// The value of the hidden form field.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The `Set-Cookie` header value, living `max_age_secs` (the link's lifetime).
    pub fn set_cookie(&self, scheme: CookieScheme, max_age_secs: u64) -> String {
        format!("{}={}; Max-Age={max_age_secs}; {}", scheme.name(), self.cookie, scheme.attributes())
    }
}

/// The `Set-Cookie` value that removes the cookie: sent with the details page and every
/// refusal, since the pair has nothing left to protect.
pub fn clear_cookie(scheme: CookieScheme) -> String {
    format!("{}=; Max-Age=0; {}", scheme.name(), scheme.attributes())
}

/// Why a POST's CSRF value was refused. For logs; the page says only "press again".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfRefused {
    #[error("the form has no CSRF field")]
    NoField,
    #[error("the request has no CSRF cookie")]
    NoCookie,
    #[error("the CSRF field is malformed")]
    Malformed,
    #[error("no CSRF cookie matches the form field")]
    Mismatch,
    #[error("the CSRF field was not made for this link")]
    WrongLink,
}

/// Checks a POST: the `Cookie` header (all of it) and the form's [`FIELD_NAME`] value,
/// for the link `claims` names.
pub fn verify(
    keys: &LinkKeys,
    claims: &LinkClaims,
    scheme: CookieScheme,
    cookie_header: Option<&str>,
    field: Option<&str>,
) -> Result<(), CsrfRefused> {
    let field = field.ok_or(CsrfRefused::NoField)?;
    let (r_text, tag_text) = field.split_once('.').ok_or(CsrfRefused::Malformed)?;
    let r = Zeroizing::new(B64URL.decode(r_text).map_err(|_| CsrfRefused::Malformed)?);
    let tag = B64URL.decode(tag_text).map_err(|_| CsrfRefused::Malformed)?;
    if r.len() != RANDOM_BYTES {
        return Err(CsrfRefused::Malformed);
    }
    let cookies = cookie_values(scheme.name(), cookie_header.unwrap_or(""));
    if cookies.is_empty() {
        return Err(CsrfRefused::NoCookie);
    }
    // Every cookie of our name is compared (a browser may send an old one too); each
    // comparison takes the same time whatever the bytes.
    let matched =
        cookies.iter().filter(|c| aws_lc_rs::constant_time::verify_slices_are_equal(c.as_bytes(), r_text.as_bytes()).is_ok()).count() > 0;
    if !matched {
        return Err(CsrfRefused::Mismatch);
    }
    hmac::verify(keys.csrf_key(claims), &mac_input(claims, &r), &tag).map_err(|_| CsrfRefused::WrongLink)
}

/// The values of every cookie named `name` in a `Cookie` header.
fn cookie_values<'a>(name: &str, header: &'a str) -> Vec<&'a str> {
    header
        .split(';')
        .take(MAX_COOKIES)
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, value)| value.trim())
        .collect()
}

fn mac_input(claims: &LinkClaims, r: &[u8]) -> Vec<u8> {
    let mut input = claims.link_hash().as_str().as_bytes().to_vec();
    input.push(b'|');
    input.extend_from_slice(r);
    input
}

#[cfg(test)]
mod tests {
    use super::super::link::tests::{NOW, TTL, eid, keys, kno, tid};
    use super::*;

    const BOTH: [CookieScheme; 2] = [CookieScheme::Https, CookieScheme::Http];

    fn cookie_of(pair: &CsrfPair, scheme: CookieScheme) -> String {
        let set = pair.set_cookie(scheme, 300);
        set.split(';').next().unwrap().to_owned()
    }

    fn link(keys: &LinkKeys) -> LinkClaims {
        keys.open(keys.issue(&tid("bank"), &eid("c"), &kno("k"), None, NOW, TTL).unwrap().token.as_str(), NOW).unwrap()
    }

    #[test]
    fn a_pair_verifies_for_its_link_only() {
        let (_d, keys) = keys("k1");
        for scheme in BOTH {
            let (a, b) = (link(&keys), link(&keys));
            let pair = CsrfPair::new(&keys, &a);
            let cookie = cookie_of(&pair, scheme);
            let check = |claims: &LinkClaims, cookie: Option<&str>, field: Option<&str>| verify(&keys, claims, scheme, cookie, field);
            assert_eq!(check(&a, Some(&cookie), Some(pair.field())), Ok(()));
            // Among other cookies, and next to an old value of ours.
            let busy = format!("theme=dark; {}=old; {cookie} ; x=1", scheme.name());
            assert_eq!(check(&a, Some(&busy), Some(pair.field())), Ok(()));
            // The same pair for another link.
            assert_eq!(check(&b, Some(&cookie), Some(pair.field())), Err(CsrfRefused::WrongLink));
            // Missing or mismatched halves.
            assert_eq!(check(&a, None, Some(pair.field())), Err(CsrfRefused::NoCookie));
            assert_eq!(check(&a, Some("theme=dark"), Some(pair.field())), Err(CsrfRefused::NoCookie));
            assert_eq!(check(&a, Some(&cookie), None), Err(CsrfRefused::NoField));
            let other = CsrfPair::new(&keys, &a);
            assert_eq!(check(&a, Some(&cookie_of(&other, scheme)), Some(pair.field())), Err(CsrfRefused::Mismatch));
            assert_eq!(check(&a, Some(&cookie), Some("x")), Err(CsrfRefused::Malformed));
            assert_eq!(check(&a, Some(&cookie), Some("AAAA.AAAA")), Err(CsrfRefused::Malformed));
        }
        // The other scheme's cookie is not ours.
        let a = link(&keys);
        let pair = CsrfPair::new(&keys, &a);
        let http_cookie = cookie_of(&pair, CookieScheme::Http);
        assert_eq!(verify(&keys, &a, CookieScheme::Https, Some(&http_cookie), Some(pair.field())), Err(CsrfRefused::NoCookie));
    }

    #[test]
    fn a_planted_cookie_is_useless_without_our_key() {
        let (_d, keys) = keys("k1");
        let a = link(&keys);
        // Someone who can set the cookie and the field to a value of their choosing still
        // cannot make the MAC.
        let r = B64URL.encode([7u8; RANDOM_BYTES]);
        let forged = format!("{r}.{}", B64URL.encode([0u8; 32]));
        for scheme in BOTH {
            let planted = format!("{}={r}", scheme.name());
            assert_eq!(verify(&keys, &a, scheme, Some(&planted), Some(&forged)), Err(CsrfRefused::WrongLink));
        }
    }

    #[test]
    fn the_cookie_is_locked_down() {
        let (_d, keys) = keys("k1");
        let a = link(&keys);
        let attributes = |set: &str| set.split("; ").skip(1).map(str::to_owned).collect::<Vec<_>>();
        let https = CsrfPair::new(&keys, &a).set_cookie(CookieScheme::Https, 300);
        assert!(https.starts_with("__Host-ctp-widget-csrf="), "{https}");
        assert_eq!(attributes(&https), ["Max-Age=300", "Path=/", "Secure", "HttpOnly", "SameSite=Strict"]);
        // Plain HTTP: no Secure (the browser would drop the cookie), so no __Host- prefix.
        let http = CsrfPair::new(&keys, &a).set_cookie(CookieScheme::Http, 300);
        assert!(http.starts_with("ctp-widget-csrf="), "{http}");
        assert_eq!(attributes(&http), ["Max-Age=300", "Path=/", "HttpOnly", "SameSite=Strict"]);
        for scheme in BOTH {
            let clear = clear_cookie(scheme);
            assert!(clear.starts_with(&format!("{}=;", scheme.name())) && clear.contains("Max-Age=0") && !clear.contains("Domain"));
        }
        assert_eq!(format!("{:?}", CsrfPair::new(&keys, &a)), "CsrfPair([REDACTED])");
    }
}
