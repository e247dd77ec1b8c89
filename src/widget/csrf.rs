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
//! - The cookie [`COOKIE_NAME`] holds `base64url(r)`: `__Host-` (so no other host or path
//!   can set it), `Secure`, `HttpOnly` (no script reads it), `SameSite=Strict` (a
//!   cross-site request never carries it), and it lives as long as a link.
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

/// The cookie's name. The `__Host-` prefix makes browsers refuse it unless it is
/// `Secure`, has `Path=/` and no `Domain`: the page must be served over HTTPS.
pub const COOKIE_NAME: &str = "__Host-ctp-widget-csrf";

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
    pub fn set_cookie(&self, max_age_secs: u64) -> String {
        format!("{COOKIE_NAME}={}; Path=/; Max-Age={max_age_secs}; Secure; HttpOnly; SameSite=Strict", self.cookie)
    }
}

/// The `Set-Cookie` value that removes the cookie: sent with the details page and every
/// refusal, since the pair has nothing left to protect.
pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict")
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
pub fn verify(keys: &LinkKeys, claims: &LinkClaims, cookie_header: Option<&str>, field: Option<&str>) -> Result<(), CsrfRefused> {
    let field = field.ok_or(CsrfRefused::NoField)?;
    let (r_text, tag_text) = field.split_once('.').ok_or(CsrfRefused::Malformed)?;
    let r = Zeroizing::new(B64URL.decode(r_text).map_err(|_| CsrfRefused::Malformed)?);
    let tag = B64URL.decode(tag_text).map_err(|_| CsrfRefused::Malformed)?;
    if r.len() != RANDOM_BYTES {
        return Err(CsrfRefused::Malformed);
    }
    let cookies = cookie_values(cookie_header.unwrap_or(""));
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

/// The values of every cookie named [`COOKIE_NAME`] in a `Cookie` header.
fn cookie_values(header: &str) -> Vec<&str> {
    header
        .split(';')
        .take(MAX_COOKIES)
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE_NAME)
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
    use super::super::link::tests::{NOW, TTL, keys};
    use super::*;

    fn cookie_of(pair: &CsrfPair) -> String {
        let set = pair.set_cookie(300);
        set.split(';').next().unwrap().to_owned()
    }

    #[test]
    fn a_pair_verifies_for_its_link_only() {
        let (_d, keys) = keys("k1");
        let a = keys.open(keys.issue("bank", "c", "k", None, NOW, TTL).unwrap().token.as_str(), NOW).unwrap();
        let b = keys.open(keys.issue("bank", "c", "k", None, NOW, TTL).unwrap().token.as_str(), NOW).unwrap();
        let pair = CsrfPair::new(&keys, &a);
        let cookie = cookie_of(&pair);
        assert_eq!(verify(&keys, &a, Some(&cookie), Some(pair.field())), Ok(()));
        // Among other cookies, and next to an old value of ours.
        let busy = format!("theme=dark; {COOKIE_NAME}=old; {cookie} ; x=1");
        assert_eq!(verify(&keys, &a, Some(&busy), Some(pair.field())), Ok(()));
        // The same pair for another link.
        assert_eq!(verify(&keys, &b, Some(&cookie), Some(pair.field())), Err(CsrfRefused::WrongLink));
        // Missing or mismatched halves.
        assert_eq!(verify(&keys, &a, None, Some(pair.field())), Err(CsrfRefused::NoCookie));
        assert_eq!(verify(&keys, &a, Some("theme=dark"), Some(pair.field())), Err(CsrfRefused::NoCookie));
        assert_eq!(verify(&keys, &a, Some(&cookie), None), Err(CsrfRefused::NoField));
        let other = CsrfPair::new(&keys, &a);
        assert_eq!(verify(&keys, &a, Some(&cookie_of(&other)), Some(pair.field())), Err(CsrfRefused::Mismatch));
        assert_eq!(verify(&keys, &a, Some(&cookie), Some("x")), Err(CsrfRefused::Malformed));
        assert_eq!(verify(&keys, &a, Some(&cookie), Some("AAAA.AAAA")), Err(CsrfRefused::Malformed));
    }

    #[test]
    fn a_planted_cookie_is_useless_without_our_key() {
        let (_d, keys) = keys("k1");
        let a = keys.open(keys.issue("bank", "c", "k", None, NOW, TTL).unwrap().token.as_str(), NOW).unwrap();
        // Someone who can set the cookie and the field to a value of their choosing still
        // cannot make the MAC.
        let r = B64URL.encode([7u8; RANDOM_BYTES]);
        let forged = format!("{r}.{}", B64URL.encode([0u8; 32]));
        assert_eq!(verify(&keys, &a, Some(&format!("{COOKIE_NAME}={r}")), Some(&forged)), Err(CsrfRefused::WrongLink));
    }

    #[test]
    fn the_cookie_is_locked_down() {
        let (_d, keys) = keys("k1");
        let a = keys.open(keys.issue("bank", "c", "k", None, NOW, TTL).unwrap().token.as_str(), NOW).unwrap();
        let set = CsrfPair::new(&keys, &a).set_cookie(300);
        for attribute in ["Path=/", "Max-Age=300", "Secure", "HttpOnly", "SameSite=Strict"] {
            assert!(set.split("; ").any(|a| a == attribute), "{set}");
        }
        assert!(set.starts_with("__Host-") && !set.contains("Domain"));
        assert!(clear_cookie().contains("Max-Age=0"));
        assert_eq!(format!("{:?}", CsrfPair::new(&keys, &a)), "CsrfPair([REDACTED])");
    }
}
