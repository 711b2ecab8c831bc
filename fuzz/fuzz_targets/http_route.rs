//! Arbitrary text as a request's path and query (split at the first `?`): the HTTP server's
//! routing maps it to one route without panicking, and a policy route always names a valid
//! policy.
#![no_main]

use dictmon::http::Route;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (path, query) = match text.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (&*text, None),
    };
    let route = Route::parse(path, query);
    let _ = route.needs_token();
    if let Route::Policy { name, .. } = &route {
        assert!(path.contains(name.as_str()));
    }
});
