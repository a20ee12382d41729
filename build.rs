//! Build identity: which commit wharf is built from, when that can be known.
//!
//! Sets `WHARF_COMMIT` for the crate: the short hash of `HEAD`, with
//! `-dirty` when the working tree differs from it, or empty when there is
//! no commit to name; and `WHARF_LONG_VERSION`, what `wharf --version`
//! prints after the name: `0.1.0 (abc1234)`, or `0.1.0`. The commit comes from `git` when wharf is built in its
//! own checkout (`cargo build`, `cargo install --path .`), or from the
//! `.cargo_vcs_info.json` that `cargo package` writes into a package made
//! from one. Anything else (no `git`, no `.git`, a copy of the sources
//! inside some other repository) silently gives no commit: the build never
//! fails for want of one.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Length of the abbreviated hash (git lengthens it if it is ambiguous).
const SHORT: usize = 7;

fn main() {
    // Without a rerun-if-changed line cargo would rerun this script on a
    // change to any file of the package; with these it reruns when the
    // commit can have changed (below, once the git directory is known).
    println!("cargo:rerun-if-changed=build.rs");
    let commit = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .and_then(|dir| from_git(&dir).or_else(|| from_vcs_info(&dir)));
    let version = env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let long_version = match &commit {
        Some(commit) => format!("{version} ({commit})"),
        None => version,
    };
    println!(
        "cargo:rustc-env=WHARF_COMMIT={}",
        commit.unwrap_or_default()
    );
    println!("cargo:rustc-env=WHARF_LONG_VERSION={long_version}");
}

/// Runs `git <args>` in `dir`; its trimmed stdout if it succeeded.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_owned())
}

/// `abc1234` or `abc1234-dirty` from the checkout wharf is built in.
fn from_git(manifest_dir: &Path) -> Option<String> {
    // Only wharf's own repository: a copy of the sources vendored into
    // another repository must not take that repository's commit.
    let top = PathBuf::from(git(manifest_dir, &["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != manifest_dir.canonicalize().ok()? {
        return None;
    }
    let hash = git(
        manifest_dir,
        &["rev-parse", &format!("--short={SHORT}"), "HEAD"],
    )?;
    if hash.is_empty() || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // Rerun when HEAD moves: HEAD itself (a checkout, a detached HEAD), the
    // branch it points at (a commit), packed-refs (where that branch may
    // live instead), HEAD's reflog (written whenever HEAD moves, even to a
    // branch that was only packed), and the sources (for the dirty mark).
    // `--git-path` finds the right files in a linked worktree too.
    let mut watched = vec![
        "HEAD".to_owned(),
        "logs/HEAD".to_owned(),
        "packed-refs".to_owned(),
    ];
    if let Some(branch) = git(manifest_dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(manifest_dir, &["rev-parse", "--git-path", &name]) {
            let path = manifest_dir.join(path);
            // A path that does not exist would make cargo rerun every time.
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    for source in ["src", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={source}");
    }
    // Tracked files that differ from HEAD, staged or not.
    let clean = Command::new("git")
        .args(["diff", "--quiet", "HEAD", "--"])
        .current_dir(manifest_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    Some(match clean.code() {
        Some(0) => hash,
        Some(1) => format!("{hash}-dirty"),
        // git could not tell: name the commit without claiming either.
        _ => hash,
    })
}

/// The commit `cargo package` recorded, for a build from a package (such as
/// `cargo install` from a registry): `{"git": {"sha1": "...", "dirty": true}}`.
fn from_vcs_info(manifest_dir: &Path) -> Option<String> {
    let path = manifest_dir.join(".cargo_vcs_info.json");
    let text = std::fs::read_to_string(path).ok()?;
    let after = &text[text.find("\"sha1\"")? + "\"sha1\"".len()..];
    let start = after.find('"')? + 1;
    let hash: String = after[start..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    if hash.len() < SHORT {
        return None;
    }
    let dirty = text.contains("\"dirty\": true") || text.contains("\"dirty\":true");
    let short = &hash[..SHORT];
    Some(if dirty {
        format!("{short}-dirty")
    } else {
        short.to_owned()
    })
}
