//! Writes the files the Debian package ships that come from the CLI definition:
//! man pages for `berth` and each subcommand (clap_mangen) and shell completions
//! (clap_complete). Usage: `cargo run --example gen_dist -- OUT_DIR`
//! (OUT_DIR/man/*.1, OUT_DIR/completions/{berth.bash,_berth,berth.fish}).
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    let out: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| "target/dist".into());
    let cmd = berth::cli::Cli::command();
    write_man_pages(&out.join("man"), &cmd)?;
    write_completions(&out.join("completions"), cmd)
}

fn write_man_pages(dir: &Path, cmd: &clap::Command) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(cmd.clone(), dir)
}

fn write_completions(dir: &Path, mut cmd: clap::Command) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "berth", dir)?;
    }
    Ok(())
}
