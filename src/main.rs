//! The `ctp-issuer` binary: everything it does lives in the library's [`ctp_issuer::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    ctp_issuer::cli::main()
}
