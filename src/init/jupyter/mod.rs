//! The idle watchdog's Jupyter rule: a notebook is busy while one of its
//! kernels executes or a client was active, not because a kernel exists, is
//! named python or holds a GPU open (Kubeflow and JupyterHub cull by kernel
//! activity for the same reason).
//!
//! Owns finding Jupyter servers (their `jpserver-PID.json` runtime files),
//! asking their REST API (`GET /api/status`, `GET /api/kernels`) with a
//! minimal blocking HTTP/1.1 client over loopback, and the pure decision
//! (`judge`). Which processes the rule covers is decided by the watchdog
//! ([`crate::init::idle`]) from `tree_depths`.
//!
//! The runtime files sit in a directory the user controls and PID 1 is root:
//! a file is opened without following a link at its name, without blocking
//! (a FIFO), only if it is a regular file of at most `MAX_FILE` bytes owned
//! by the user the server process runs as, and what it says is used for one
//! thing only: an HTTP request to 127.0.0.1 on the port it names.
//!
//! Layout, leaves first: `api` (what the REST API says, pure), `rule`
//! (the decision and the process tree, pure), `runtime` (runtime files),
//! `http` (the loopback client), `finder` (one check: find, ask, judge).
//! Nothing here reads the watchdog's state: the watchdog depends on this
//! module, never the other way.

pub(crate) mod api;
pub(crate) mod finder;
pub(crate) mod http;
pub(crate) mod rule;
pub(crate) mod runtime;

// What the fuzz target (fuzz/fuzz_targets/jupyter.rs) calls: the parsers of
// everything that comes from outside.
pub use api::{parse_kernels, parse_status, parse_time, Kernel, Status};
pub use http::{parse_response, Response};
pub use runtime::{parse_server, runtime_file_pid, Server};

pub(crate) use finder::{now_micros, Finder};
pub(crate) use rule::{tree_depths, Reason};
pub(crate) use runtime::runtime_dirs;
