//! The open-file limit, against which the listeners' connection bounds are checked at
//! start: every connection is a file descriptor, and a process out of descriptors stops
//! accepting on every listener at once, `/healthz` included. The soft limit is raised to
//! the hard one (as most servers do), and a configuration whose bounds do not fit is
//! refused with a message that says what to change.

/// Descriptors kept for everything that is not a listener's connection: database
/// connections, the broker, the SaaS client's pool, log files, key files being read.
pub const RESERVED: u64 = 256;

#[derive(Debug, thiserror::Error)]
pub enum FdLimitError {
    #[error("cannot read the open-file limit: {0}")]
    Read(std::io::Error),
    #[error(
        "{listeners} listeners × http.max_connections {per_listener} + {RESERVED} reserved descriptors need {needed} open files, \
         but the limit is {limit}: lower http.max_connections or raise the limit (ulimit -n, LimitNOFILE=)"
    )]
    TooLow { listeners: u64, per_listener: u64, needed: u64, limit: u64 },
}

/// Raises the soft limit to the hard limit and checks that `listeners` listeners of
/// `per_listener` connections each fit. Returns the limit now in force.
pub fn ensure(listeners: u64, per_listener: u64) -> Result<u64, FdLimitError> {
    let limit = raise_to_hard().map_err(FdLimitError::Read)?;
    let needed = listeners.saturating_mul(per_listener).saturating_add(RESERVED);
    if needed > limit {
        return Err(FdLimitError::TooLow { listeners, per_listener, needed, limit });
    }
    Ok(limit)
}

fn raise_to_hard() -> std::io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a live, properly aligned value.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads one `rlimit` through a pointer to a live value.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_that_fit_pass_and_others_name_the_setting() {
        let limit = ensure(3, 1).unwrap();
        assert!(limit >= RESERVED + 3);
        let err = ensure(3, limit).unwrap_err().to_string();
        assert!(err.contains("http.max_connections"), "{err}");
    }
}
