//! Sans-IO protocol codecs: bytes in, events and bytes out. No socket, no clock.

pub mod http1;
pub mod jsonfield;
pub mod seq;
pub mod ws;
