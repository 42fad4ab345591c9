//! The `triesync-peer` binary: see `triesync-peer --help` and PROTOCOL.md.

use triesync_peer::cli::{self, Command};

fn main() {
    match cli::parse(std::env::args().skip(1)) {
        Ok(Command::Help) => print!("{}", cli::USAGE),
        Ok(Command::Run(opts)) => {
            if let Err(e) = triesync_peer::run(*opts) {
                eprintln!("triesync-peer: {e}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("triesync-peer: {e}");
            std::process::exit(2);
        }
    }
}
