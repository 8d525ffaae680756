//! labinit: the lab's container entrypoint. Everything lives in
//! `labkit::init`. The story from here: `cli::main` reads the environment
//! once and `cli::dispatch` picks the command; `run::run` (src/init/run.rs)
//! lists the phases, launches the job through `launch::spawn`, whose child
//! calls `launch::drop_privileges`, and supervises it with
//! `supervisor::Supervisor::run`, which forwards the signals.

fn main() {
    std::process::exit(labkit::init::cli::main());
}
