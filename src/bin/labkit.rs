//! `labkit`: the maintainers' CLI for the lab image family.
use clap::Parser;

#[derive(Parser)]
#[command(name = "labkit", version, about = "Render, check, plan, bake and build the lab image family")]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("labkit: no command yet; see --help");
    std::process::exit(2);
}
