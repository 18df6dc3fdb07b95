//! Black-box tests: two real instances per test, sharing a fresh Postgres database and a fresh
//! Redis prefix, driven over real sockets by a Socket.IO client and an HTTP client.

mod helpers;
mod sio;

mod authz;
mod bad_input;
mod budgets;
mod conversations;
mod faults;
mod handshake;
mod hostile;
mod http;
mod matrix;
mod messages;
mod ops;
mod presence;
mod process;
mod ratelimit;
mod raw;
mod recovery;
mod replica;
mod retention;
mod upload_abuse;
mod uploads;
