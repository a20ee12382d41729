//! Which wharf this is: the package version and, when the build could tell,
//! the git commit it was built from. `wharf --version`, the `listening on`
//! line and the `wharf_build_info` metric all say the same.

use std::fmt;

/// The package version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The abbreviated commit the build came from, e.g. `abc1234`, with
/// `-dirty` if the sources differed from it; `None` when the build had no
/// git checkout and no package record to read it from.
pub const COMMIT: Option<&str> = {
    let commit = env!("WHARF_COMMIT");
    if commit.is_empty() {
        None
    } else {
        Some(commit)
    }
};

/// What `wharf --version` prints after the name: `0.1.0 (abc1234)`, or
/// `0.1.0` without a commit.
pub const LONG_VERSION: &str = env!("WHARF_LONG_VERSION");

/// `wharf 0.1.0 abc1234`, or `wharf 0.1.0` without a commit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wharf {VERSION}")?;
        if let Some(commit) = COMMIT {
            write!(f, " {commit}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_names_the_version_and_any_commit() {
        let text = Identity.to_string();
        assert!(text.starts_with(&format!("wharf {VERSION}")), "{text}");
        match COMMIT {
            Some(commit) => {
                assert_eq!(text, format!("wharf {VERSION} {commit}"));
                let hash = commit.strip_suffix("-dirty").unwrap_or(commit);
                assert!(hash.len() >= 7, "{commit}");
                assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{commit}");
            }
            None => assert_eq!(text, format!("wharf {VERSION}")),
        }
        match COMMIT {
            Some(commit) => assert_eq!(LONG_VERSION, format!("{VERSION} ({commit})")),
            None => assert_eq!(LONG_VERSION, VERSION),
        }
    }
}
