//! Inputs the fuzz targets (`fuzz/`) found failing, fed again to the code they broke. Each
//! test reads every file of its target's `fuzz/regressions/<target>/`, so that keeping a
//! new crash input is putting it there (`fuzz/README.md`); a target without a test here
//! gets one with its first regression.

use std::path::Path;
use std::time::SystemTime;

use ctp_issuer::api::json_body;
use ctp_issuer::api::m2p::{EntityDetailsBody, OperationBody, RequestStatusBody};
use ctp_issuer::api::registry::KitPut;
use ctp_issuer::auth::ApiAuth;
use ctp_issuer::auth::config::AuthConfig;
use ctp_issuer::enrollment::EntityProfile;

/// `(file name, bytes)` of every regression input of `target`.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions").join(target);
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty(), "no regression inputs in {}", dir.display());
    files.into_iter().map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())).collect()
}

/// The digits of `text` with single spaces, dashes and underscores between them taken as
/// part of a run (`4111-1111-1111-1111` is one run of 16).
fn digit_runs(text: &[u8]) -> Vec<String> {
    let mut runs = vec![String::new()];
    for (i, &b) in text.iter().enumerate() {
        let inside = b" -_".contains(&b) && i > 0 && text[i - 1].is_ascii_digit() && text.get(i + 1).is_some_and(u8::is_ascii_digit);
        if b.is_ascii_digit() {
            runs.last_mut().unwrap().push(b as char);
        } else if !inside && !runs.last().unwrap().is_empty() {
            runs.push(String::new());
        }
    }
    runs
}

/// Whether `text` holds 12 digits in a row (see [`digit_runs`]) that `input` held too.
fn echoes_a_card_number(text: &str, input: &[u8]) -> bool {
    let theirs = digit_runs(input);
    digit_runs(text.as_bytes())
        .iter()
        .flat_map(|run| run.as_bytes().windows(12).map(|w| String::from_utf8(w.to_vec()).unwrap()).collect::<Vec<_>>())
        .any(|window| theirs.iter().any(|t| t.contains(&window)))
}

/// An unknown field whose name was digit groups was echoed in the answer.
#[test]
fn api_bodies() {
    for (name, input) in inputs("api_bodies") {
        let answers = [
            json_body::<EntityProfile>(&input).err(),
            json_body::<OperationBody>(&input).err(),
            json_body::<RequestStatusBody>(&input).err(),
            json_body::<EntityDetailsBody>(&input).err(),
            json_body::<KitPut>(&input).err(),
        ];
        for error in answers.into_iter().flatten() {
            let body = error.body().to_string();
            assert!(!echoes_a_card_number(&body, &input), "{name}: {body}");
        }
    }
}

/// A configuration file's error quoted the line holding a password. The inputs are the
/// target's: the file, then after a NUL byte `NAME=VALUE` lines; the marker `S3CR3T` is
/// only ever in secret places in them.
#[test]
fn config_file() {
    for (name, input) in inputs("config_file") {
        let (file, env) = match input.iter().position(|b| *b == 0) {
            Some(at) => (&input[..at], &input[at + 1..]),
            None => (&input[..], &[][..]),
        };
        let text = String::from_utf8_lossy(file);
        let env: Vec<(String, String)> =
            String::from_utf8_lossy(env).lines().filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))).collect();
        let file = (!text.is_empty()).then(|| (Path::new("ctp-issuer.toml"), text.as_ref()));
        if let Err(e) = ctp_issuer::Config::from_layers(file, env) {
            assert!(!e.to_string().contains("S3CR3T"), "{name}: {e}");
        }
    }
}

/// `scrub` turned the control characters between two short digit runs into the spaces
/// that join them into a card number.
#[test]
fn saas_answers() {
    for (name, input) in inputs("saas_answers") {
        let out = ctp_issuer::saas::scrub(&String::from_utf8_lossy(&input));
        let mut digits = 0;
        for c in out.chars() {
            digits = if c.is_ascii_digit() {
                digits + 1
            } else if c == ' ' || c == '-' {
                digits
            } else {
                0
            };
            assert!(digits < 8, "{name}: {out:?}");
        }
    }
}

/// A signed token with an `exp` past what a `SystemTime` holds panicked the verifier. The
/// inputs are the target's: a flags byte (1: sign), then the JOSE header, a NUL byte and
/// the payload, signed here with the development HS256 secret.
#[test]
fn api_auth() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    use josekit::jws::JwsSigner;
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("keys");
    let auth = ApiAuth::load(&AuthConfig::default(), &keys).unwrap();
    let secret = std::fs::read_to_string(keys.join("jwt/dev-hs256.secret")).unwrap();
    let signer = josekit::jws::HS256.signer_from_bytes(secret.trim_end().as_bytes()).unwrap();
    for (name, input) in inputs("api_auth") {
        let (flags, rest) = input.split_first().unwrap();
        let authorization = if flags & 1 == 1 {
            let at = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            let (header, payload) = (&rest[..at], rest.get(at + 1..).unwrap_or_default());
            let signing_input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
            let signature = signer.sign(signing_input.as_bytes()).unwrap();
            format!("Bearer {signing_input}.{}", B64URL.encode(signature))
        } else {
            String::from_utf8_lossy(rest).into_owned()
        };
        // A panic fails the test; these tokens are all refused.
        assert!(auth.verify(Some(&authorization), SystemTime::now()).is_err(), "{name}");
    }
}
