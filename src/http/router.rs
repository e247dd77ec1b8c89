//! Path routing with matchit. Each listener has its own table, so a path that exists on
//! the internal listener is simply not there on the public one. Routes have names, and
//! metrics are labelled by name, never by the raw path (which would carry ids and let any
//! caller grow the label set without bound).

/// A routing table mapping paths to route values of type `R`.
pub struct Router<R> {
    inner: matchit::Router<R>,
}

/// The outcome of routing a request.
pub struct Routed<'a, R> {
    pub route: &'a R,
    pub params: Vec<(String, String)>,
}

impl<R> Router<R> {
    /// Builds a table from `(path pattern, route)` pairs; patterns use matchit's `{name}`.
    /// Panics on a malformed or conflicting pattern: the table is a compile-time constant
    /// in all but name, and a bad one must fail the first test that builds it.
    pub fn new(routes: impl IntoIterator<Item = (&'static str, R)>) -> Self {
        let mut inner = matchit::Router::new();
        for (path, route) in routes {
            inner.insert(path, route).unwrap_or_else(|e| panic!("route {path}: {e}"));
        }
        Self { inner }
    }

    pub fn at(&self, path: &str) -> Option<Routed<'_, R>> {
        let matched = self.inner.at(path).ok()?;
        let params = matched.params.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        Some(Routed { route: matched.value, params })
    }
}

impl<R> Routed<'_, R> {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}
