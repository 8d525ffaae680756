//! labinit: the lab's container entrypoint. Everything lives in
//! `labkit::init`; `cli` parses the command line and runs the phases.

fn main() {
    std::process::exit(labkit::init::cli::main());
}
