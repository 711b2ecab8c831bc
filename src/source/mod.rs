//! Where policy states come from: DICT itself (HTTPS/XML), a Bridge (gRPC), or the built-in
//! simulator. Today: the simulator's traffic model.
//!
//! May use: `domain`.

pub mod traffic;
