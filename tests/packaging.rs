//! What the README's "Set-up" and docs/installing.md promise about the
//! package itself: the `rust-version` in Cargo.toml is the real minimum.
//!
//! Only one (stable) toolchain is available where this runs, so the minimum
//! cannot be proved by building with it. What can be checked is the floor
//! the committed Cargo.lock sets: no dependency the build uses (normal, dev
//! or build, on this platform) may declare a newer `rust-version` than
//! wharf does. The standard library APIs wharf's own code calls are checked
//! against the same number by clippy's `incompatible_msrv` lint, which CI
//! runs with `-D warnings`.

mod common;

use std::process::Command;

/// What wharf's own code needs whatever its dependencies need: the newest
/// standard-library API it calls is `u64::is_multiple_of` (src/worker.rs),
/// stable since Rust 1.87 (clippy's `incompatible_msrv` finds such calls
/// when rust-version is lowered below them).
const CODE_FLOOR: (u32, u32) = (1, 87);

/// `1.88` or `1.88.0` as (1, 88); the patch level is not a floor cargo
/// enforces on a compiler of the same minor release.
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().unwrap_or("0").parse().ok()?;
    Some((major, minor))
}

/// `rust-version = "..."` from the `[package]` table of Cargo.toml.
fn stated_rust_version() -> (u32, u32) {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("Cargo.toml is readable");
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package {
            if let Some(value) = line.strip_prefix("rust-version") {
                let value = value
                    .trim()
                    .trim_start_matches('=')
                    .trim()
                    .trim_matches('"');
                return major_minor(value)
                    .unwrap_or_else(|| panic!("rust-version {value:?} does not parse"));
            }
        }
    }
    panic!("Cargo.toml's [package] has no rust-version");
}

/// Runs cargo with `args`, or says why it could not.
fn cargo(args: &[&str]) -> Result<String, String> {
    // Set by `cargo test` for the tests it runs.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(&cargo)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{cargo} {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8(output.stdout).map_err(|e| format!("{cargo} {args:?}: {e}"))
}

/// Every package the build uses on this host, from wharf down through its
/// normal, dev and build dependencies as Cargo.lock pins them, with the
/// `rust-version` each declares (`None` for those that declare none).
fn locked_dependencies() -> Result<Vec<(String, String, Option<String>)>, String> {
    let host = cargo(&["-vV"])?
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_owned))
        .ok_or("`cargo -vV` names no host")?;
    let json = cargo(&[
        "metadata",
        "--format-version",
        "1",
        "--locked",
        "--offline",
        "--filter-platform",
        &host,
    ])?;
    let metadata: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| format!("cargo metadata: {e}"))?;
    let resolve = &metadata["resolve"];
    let root = resolve["root"].as_str().ok_or("no resolve root")?;
    let nodes = resolve["nodes"].as_array().ok_or("no resolve nodes")?;
    let deps_of = |id: &str| -> Vec<String> {
        nodes
            .iter()
            .find(|node| node["id"] == id)
            .and_then(|node| node["deps"].as_array())
            .map(|deps| {
                deps.iter()
                    .filter_map(|dep| dep["pkg"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Everything reachable from wharf; bounded by the number of nodes.
    let mut reached = vec![root.to_owned()];
    let mut next = 0;
    while next < reached.len() && next <= nodes.len() {
        for dep in deps_of(&reached[next]) {
            if !reached.contains(&dep) {
                reached.push(dep);
            }
        }
        next += 1;
    }
    let packages = metadata["packages"].as_array().ok_or("no packages")?;
    Ok(packages
        .iter()
        .filter(|package| {
            package["id"] != root
                && reached
                    .iter()
                    .any(|id| package["id"].as_str() == Some(id.as_str()))
        })
        .map(|package| {
            (
                package["name"].as_str().unwrap_or("?").to_owned(),
                package["version"].as_str().unwrap_or("?").to_owned(),
                package["rust_version"].as_str().map(str::to_owned),
            )
        })
        .collect())
}

/// Promised (README, "Set-up", and docs/installing.md, "The Rust version"):
/// `rust-version` in Cargo.toml is the oldest Rust that builds wharf with
/// the committed Cargo.lock, neither less (a dependency would refuse to
/// build) nor more (it would turn away compilers that work).
#[test]
fn rust_version_is_the_floor_the_lockfile_and_the_code_set() {
    let stated = stated_rust_version();
    let dependencies = match locked_dependencies() {
        Ok(dependencies) => dependencies,
        Err(why) => {
            common::netns::skipped(&format!(
                "rust-version against Cargo.lock not checked: {why}"
            ));
            return;
        }
    };
    assert!(
        dependencies.len() > 20,
        "too few packages found: {dependencies:?}"
    );
    let (floor, by) = dependencies
        .iter()
        .filter_map(|(name, version, rust_version)| {
            let needs = major_minor(rust_version.as_deref()?)?;
            Some((needs, format!("{name} {version}")))
        })
        .max()
        .map(|(needs, by)| {
            if needs >= CODE_FLOOR {
                (needs, by)
            } else {
                (CODE_FLOOR, "wharf's own code".to_owned())
            }
        })
        .unwrap_or((CODE_FLOOR, "wharf's own code".to_owned()));
    assert_eq!(
        stated, floor,
        "Cargo.toml says rust-version = \"{}.{}\", but the floor is {}.{} (set by {by}); \
         state the floor in Cargo.toml, the README and docs/installing.md",
        stated.0, stated.1, floor.0, floor.1
    );
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md is readable");
    let promise = format!("Rust {}.{} or newer", stated.0, stated.1);
    assert!(
        readme.contains(&promise),
        "the README should say \"{promise}\" in its Set-up section"
    );
}

#[test]
fn versions_parse_as_major_and_minor() {
    assert_eq!(major_minor("1.88"), Some((1, 88)));
    assert_eq!(major_minor("1.88.0"), Some((1, 88)));
    assert_eq!(major_minor("1"), Some((1, 0)));
    assert_eq!(major_minor("one"), None);
}

/// Runs `wharf <args>` to completion (these commands exit at once; a child
/// still running after 30 s is killed by its PID and fails the test).
fn wharf(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    use std::io::Read;
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wharf starts");
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read_all(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wharf {args:?} still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (
        status.code(),
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    )
}

/// The commit `git` names for this checkout, if there is one to ask.
fn git_head() -> Option<String> {
    let output = Command::new("git")
        .args(["rev-parse", "--short=7", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let top = Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let top = std::path::PathBuf::from(String::from_utf8(top.stdout).ok()?.trim());
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    if !output.status.success() || top.canonicalize().ok()? != here.canonicalize().ok()? {
        return None;
    }
    Some(String::from_utf8(output.stdout).ok()?.trim().to_owned())
}

/// Promised (docs/installing.md, "Installing the binary"): `wharf
/// --version` prints the version and, built from a git checkout, the
/// commit.
#[test]
fn version_names_the_package_version_and_the_commit() {
    for flag in ["--version", "-V"] {
        let (code, stdout, stderr) = wharf(&[flag], &[]);
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(
            stdout,
            format!("wharf {}\n", wharf::build_info::LONG_VERSION)
        );
        assert!(
            stdout.starts_with(&format!("wharf {} ", env!("CARGO_PKG_VERSION")))
                || stdout == format!("wharf {}\n", env!("CARGO_PKG_VERSION")),
            "{stdout}"
        );
    }
    match git_head() {
        Some(head) => {
            let commit = wharf::build_info::COMMIT.unwrap_or_else(|| {
                panic!(
                    "HEAD is {head} but the build recorded no commit (a build \
                     script output left from a build without git? touch build.rs)"
                )
            });
            // The build may predate the last commit only if nothing was
            // rebuilt since; cargo reruns build.rs when HEAD moves.
            assert!(
                commit.starts_with(&head),
                "built from {commit}, HEAD is {head}"
            );
            let (_, stdout, _) = wharf(&["--version"], &[]);
            assert!(stdout.contains(&format!("({commit})")), "{stdout}");
        }
        None => common::netns::skipped("no git checkout here: the commit in --version not checked"),
    }
}

/// Promised (docs/operating.md, "Running it"): the listening line starts
/// `listening on <ip>:<port>` and then names the build and the settings.
#[test]
fn listening_line_names_the_build_after_the_address() {
    let wharf = common::spawn_wharf(&["--workers", "2", "--queue", "5"]);
    let log = wharf.log();
    let line = log
        .lines()
        .find(|line| line.contains("listening on "))
        .expect("a listening line");
    let expected = format!(
        "listening on {} ({}, 2 workers, queue 5, ",
        wharf.addr,
        wharf::build_info::Identity
    );
    assert!(line.contains(&expected), "{line}\nexpected: {expected}");
}

/// The subcommands and a few flags every generated document must name.
const SUBCOMMANDS: [&str; 5] = ["serve", "client", "bench", "completions", "manpage"];
const FLAGS: [&str; 4] = ["workers", "heartbeat-timeout", "connect", "log-file"];

/// Promised (docs/installing.md, "Shell completions and the manual
/// page"): `wharf completions SHELL` prints a script for each of the five
/// shells, naming every subcommand and the flags.
#[test]
fn completions_for_every_shell_name_the_subcommands_and_flags() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, script, stderr) = wharf(&["completions", shell], &[]);
        assert_eq!(code, Some(0), "{shell}: {stderr}");
        assert!(script.len() > 1000, "{shell}: {script}");
        for word in SUBCOMMANDS.iter().chain(&FLAGS) {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
}

/// The bash script works: sourced into bash, it completes `wharf se` to
/// `serve` and `wharf serve --wor` to `--workers`.
#[test]
fn bash_completion_completes_a_subcommand_and_a_flag() {
    let (_, script, _) = wharf(&["completions", "bash"], &[]);
    let dir = std::env::temp_dir().join(format!("wharf-completions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("wharf.bash");
    std::fs::write(&path, script).expect("script written");
    let check = r#"source "$1" || exit 9
COMP_WORDS=(wharf se); COMP_CWORD=1; _wharf wharf se wharf; echo "${COMPREPLY[*]}"
COMP_WORDS=(wharf serve --wor); COMP_CWORD=2; _wharf wharf --wor serve; echo "${COMPREPLY[*]}""#;
    let output = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", check, "bash"])
        .arg(&path)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let output = match output {
        Ok(output) => output,
        Err(e) => {
            common::netns::skipped(&format!("bash completion not tried: no bash ({e})"));
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout, "serve\n--workers\n", "{output:?}");
}

/// A shell wharf does not know is a bad flag: exit 2, naming it and the
/// ones it knows.
#[test]
fn completions_for_an_unknown_shell_exit_2() {
    let (code, stdout, stderr) = wharf(&["completions", "tcsh"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("tcsh"), "{stderr}");
    assert!(stderr.contains("bash"), "{stderr}");
    let (code, _, stderr) = wharf(&["completions"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
}

/// Promised: `wharf manpage` prints wharf(1) in roff, with a section of
/// options per subcommand.
#[test]
fn manpage_is_roff_naming_every_subcommand_and_flag() {
    let (code, page, stderr) = wharf(&["manpage"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(page.contains("\n.TH wharf 1 "), "{page}");
    for section in ["NAME", "SYNOPSIS", "COMMANDS", "VERSION"] {
        assert!(page.contains(&format!(".SH {section}")), "no {section}");
    }
    for sub in ["SERVE", "CLIENT", "BENCH", "COMPLETIONS"] {
        assert!(
            page.contains(&format!(".SH \"WHARF {sub} OPTIONS\"")),
            "no section for {sub}:\n{page}"
        );
    }
    for sub in SUBCOMMANDS {
        assert!(page.contains(&format!("wharf {sub}")), "lacks {sub}");
    }
    for flag in FLAGS {
        // roff writes a minus as \-.
        let roff = format!("--{flag}").replace('-', "\\-");
        assert!(page.contains(&roff), "lacks --{flag}");
    }
    assert!(page.contains(wharf::build_info::LONG_VERSION), "no version");

    // groff, where installed, formats it without a warning.
    let dir = std::env::temp_dir().join(format!("wharf-manpage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("wharf.1");
    std::fs::write(&path, &page).expect("page written");
    let groff = Command::new("groff")
        .args(["-man", "-ww", "-z"])
        .arg(&path)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    match groff {
        Ok(output) => assert!(
            output.status.success() && output.stderr.is_empty(),
            "groff: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) => common::netns::skipped(&format!("manual page not formatted: no groff ({e})")),
    }
}

/// The listening line of a `wharf serve` started with `command`, stopped by
/// its PID when the test is done.
fn listening_line(command: Command) -> String {
    let wharf = common::spawn_wharf_command(command);
    let log = wharf.log();
    log.lines()
        .find(|line| line.contains("listening on "))
        .expect("a listening line")
        .to_owned()
}

/// Promised (docs/operating.md, "Settings from the environment"): every
/// `serve` flag can be set as `WHARF_<FLAG>`, `--bind` included.
#[test]
fn serve_flags_come_from_the_environment() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wharf"));
    command.arg("serve").envs([
        ("WHARF_BIND", "127.0.0.1:0"),
        ("WHARF_WORKERS", "3"),
        ("WHARF_QUEUE", "7"),
        ("WHARF_MAX_CONNECTIONS", "99"),
        ("WHARF_FRAMING", "line"),
        ("WHARF_REUSE_PORT", "1"),
    ]);
    let line = listening_line(command);
    assert!(line.contains("listening on 127.0.0.1:"), "{line}");
    assert!(
        line.contains(", 3 workers, queue 7, max-connections 99, line framing"),
        "{line}"
    );
}

/// A flag wins over its variable.
#[test]
fn a_flag_overrides_its_environment_variable() {
    let mut command = common::serve_command("127.0.0.1:0", &["--workers", "2"]);
    command.env("WHARF_WORKERS", "3").env("WHARF_QUEUE", "5");
    let line = listening_line(command);
    assert!(line.contains(", 2 workers, queue 5, "), "{line}");
    let mut command = common::serve_command("127.0.0.1:0", &["--workers=2"]);
    command.env("WHARF_WORKERS", "3");
    let line = listening_line(command);
    assert!(line.contains(", 2 workers, "), "{line}");
}

/// A bad value in a variable is a bad flag (exit 2) whose message names the
/// variable; a bad value on the command line still names the flag.
#[test]
fn a_bad_environment_value_exits_2_naming_the_variable() {
    for (variable, value, also) in [
        ("WHARF_WORKERS", "lots", "--workers"),
        ("WHARF_WORKERS", "0", "between 1 and 4096"),
        ("WHARF_GRACE", "soon", "250ms"),
        ("WHARF_FRAMING", "xml", "length, line"),
        ("WHARF_REUSE_PORT", "maybe", "--reuse-port"),
        ("WHARF_BIND", "nowhere", "--bind"),
    ] {
        // WHARF_BIND is tried without --bind, which would win over it.
        let args: &[&str] = if variable == "WHARF_BIND" {
            &["serve"]
        } else {
            &["serve", "--bind", "127.0.0.1:0"]
        };
        let (code, stdout, stderr) = wharf(args, &[(variable, value)]);
        assert_eq!(code, Some(2), "{variable}={value}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(
            stderr.contains(&format!(
                "invalid value '{value}' in the environment variable {variable}"
            )),
            "{variable}={value}: {stderr}"
        );
        assert!(stderr.contains(also), "{variable}={value}: {stderr}");
        assert!(!stderr.contains("listening on"), "{stderr}");
    }
    let (code, _, stderr) = wharf(
        &["serve", "--bind", "127.0.0.1:0", "--workers", "lots"],
        &[("WHARF_WORKERS", "lots")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid value 'lots' for '--workers <N>'"),
        "{stderr}"
    );
    assert!(!stderr.contains("WHARF_WORKERS"), "{stderr}");
}

/// `wharf serve --help` shows every flag's variable, so none is forgotten
/// when a flag is added.
#[test]
fn serve_help_names_a_variable_for_every_flag() {
    let (code, help, stderr) = wharf(&["serve", "--help"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let flags: Vec<&str> = help
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("--"))
        .map(|rest| rest.split([' ', '=']).next().unwrap_or(rest))
        .filter(|flag| *flag != "help")
        .collect();
    assert!(flags.len() >= 20, "{flags:?}\n{help}");
    for flag in flags {
        let variable = format!("WHARF_{}", flag.to_uppercase().replace('-', "_"));
        assert!(
            help.contains(&format!("[env: {variable}=")),
            "--{flag} has no {variable}:\n{help}"
        );
    }
}

/// Promised (README, "License", and docs/installing.md, "The source
/// package"): the package carries both licence texts and the README, says
/// where it lives, and leaves out build output, the fuzzing crate and CI's
/// script; `cargo package` has nothing to warn about.
#[test]
fn the_package_carries_the_licences_and_nothing_it_should_not() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(&cargo)
        .args([
            "package",
            "--list",
            "--allow-dirty",
            "--offline",
            "--locked",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    let output = match output {
        Ok(output) if output.status.success() => output,
        Ok(output) => panic!(
            "cargo package --list failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) => {
            common::netns::skipped(&format!("package contents not checked: no {cargo} ({e})"));
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
    let list = String::from_utf8_lossy(&output.stdout);
    let files: Vec<&str> = list.lines().collect();
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "LICENSE-MIT",
        "LICENSE-APACHE",
        "build.rs",
        "src/lib.rs",
        "src/bin/wharf/main.rs",
    ] {
        assert!(files.contains(&needed), "{needed} is not packaged:\n{list}");
    }
    for file in &files {
        assert!(
            !["target/", "fuzz/", ".ci/"]
                .iter()
                .any(|dir| file.starts_with(dir)),
            "{file} should not be packaged"
        );
    }
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("Cargo.toml is readable");
    for key in [
        "license",
        "repository",
        "documentation",
        "keywords",
        "categories",
        "readme",
    ] {
        assert!(
            manifest
                .lines()
                .any(|line| line.starts_with(&format!("{key} = "))),
            "Cargo.toml has no {key}"
        );
    }
}
