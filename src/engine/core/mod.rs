//! The one connection core that HTTP, WebSocket and the probe run on (DESIGN.md:
//! `Conn = socket + Transport + Session`). Pieces land here one at a time as the three event
//! loops move onto it.

pub mod timer;
pub mod timerfd;
