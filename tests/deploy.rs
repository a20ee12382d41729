//! deploy/wharf.service against what wharf does with it: systemd must give
//! a stop the time wharf's flags allow it, talk the notify protocol with it,
//! and let it write the log file the logrotate example of docs/operating.md
//! ("Signals") rotates.
//! (`.ci/run` checks the syntax with `systemd-analyze verify`; this checks
//! that the numbers and paths agree.)

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// The `[Service]` settings of a unit file, by name (a setting given twice
/// keeps every value, in order).
fn service_section(path: &Path) -> HashMap<String, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut settings: HashMap<String, Vec<String>> = HashMap::new();
    let mut in_service = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "continued lines are not parsed here: {line}"
        );
        if let (true, Some((key, value))) = (in_service, line.split_once('=')) {
            settings
                .entry(key.trim().to_owned())
                .or_default()
                .push(value.trim().to_owned());
        }
    }
    settings
}

/// A duration as systemd and wharf's flags write those in this unit:
/// `10s`, `500ms`, `1min`, `2min 30s`, `1h`, or a bare number of seconds
/// (systemd's default unit).
fn duration(text: &str) -> Duration {
    let mut total = Duration::ZERO;
    for part in text.split_whitespace() {
        let split = part
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(part.len());
        let (number, unit) = part.split_at(split);
        let number: f64 = number
            .parse()
            .unwrap_or_else(|_| panic!("not a duration: {text:?}"));
        let seconds = match unit {
            "ms" | "msec" => 0.001,
            "" | "s" | "sec" | "second" | "seconds" => 1.0,
            "m" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            _ => panic!("unknown duration unit {unit:?} in {text:?}"),
        };
        total += Duration::from_secs_f64(number * seconds);
    }
    total
}

/// The value of `--flag V` or `--flag=V` in a command line.
fn flag<'a>(words: &[&'a str], name: &str) -> Option<&'a str> {
    let prefix = format!("{name}=");
    words.iter().enumerate().find_map(|(i, word)| {
        if *word == name {
            Some(
                *words
                    .get(i + 1)
                    .unwrap_or_else(|| panic!("{name} without a value")),
            )
        } else {
            word.strip_prefix(prefix.as_str())
        }
    })
}

fn single<'a>(settings: &'a HashMap<String, Vec<String>>, key: &str) -> &'a str {
    match settings.get(key).map(Vec::as_slice) {
        Some([value]) => value,
        Some(values) => panic!("{key}= is set {} times: {values:?}", values.len()),
        None => panic!("deploy/wharf.service has no {key}="),
    }
}

fn unit() -> HashMap<String, Vec<String>> {
    service_section(&Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/wharf.service"))
}

fn exec_start(settings: &HashMap<String, Vec<String>>) -> Vec<&str> {
    let words: Vec<&str> = single(settings, "ExecStart").split_whitespace().collect();
    // ExecStart= may start with prefixes such as `-` or `@`.
    let program = words[0].trim_start_matches(['-', '@', ':', '+', '!']);
    assert!(program.ends_with("/wharf"), "ExecStart runs {program}");
    assert_eq!(words.get(1), Some(&"serve"), "{words:?}");
    words
}

#[test]
fn durations_parse_in_the_forms_used() {
    assert_eq!(duration("10s"), Duration::from_secs(10));
    assert_eq!(duration("2s"), Duration::from_secs(2));
    assert_eq!(duration("500ms"), Duration::from_millis(500));
    assert_eq!(duration("1min"), Duration::from_secs(60));
    assert_eq!(duration("2min 30s"), Duration::from_secs(150));
    assert_eq!(duration("20"), Duration::from_secs(20));
    let words = ["wharf", "serve", "--grace", "3s", "--drain-delay=1s"];
    assert_eq!(flag(&words, "--grace"), Some("3s"));
    assert_eq!(flag(&words, "--drain-delay"), Some("1s"));
    assert_eq!(flag(&words, "--workers"), None);
}

/// systemd must never kill a stop that is within wharf's own bounds:
/// TimeoutStopSec= above --drain-delay + --grace (wharf's defaults, 0 and
/// 10 s, when the flags are absent). And the unit must be the kind wharf's
/// notifications are for, stopped with the signal that drains.
#[test]
fn the_service_gives_a_stop_the_time_its_flags_allow() {
    let settings = unit();
    let words = exec_start(&settings);
    let grace = flag(&words, "--grace").map_or(Duration::from_secs(10), duration);
    let drain_delay = flag(&words, "--drain-delay").map_or(Duration::ZERO, duration);
    let timeout = duration(single(&settings, "TimeoutStopSec"));
    assert!(
        timeout > grace + drain_delay,
        "TimeoutStopSec={timeout:?} is not above --drain-delay {drain_delay:?} + --grace \
         {grace:?}: systemd would kill a drain within its bounds"
    );

    assert_eq!(single(&settings, "Type"), "notify");
    assert_eq!(single(&settings, "KillSignal"), "SIGTERM");
    let watchdog = duration(single(&settings, "WatchdogSec"));
    // wharf's acceptor and reaper turn every 250 ms; below 1 s the watchdog
    // may be withheld from a healthy server.
    assert!(
        watchdog >= Duration::from_secs(1),
        "WatchdogSec={watchdog:?}"
    );
}

/// With DynamicUser= and ProtectSystem=strict the service can write only
/// in the directories systemd makes for it: a --log-file must be in its
/// LogsDirectory=, and the logrotate example of docs/operating.md must
/// rotate that file.
#[test]
fn the_log_file_is_writable_and_is_the_one_logrotate_rotates() {
    let settings = unit();
    let words = exec_start(&settings);
    let log_file = flag(&words, "--log-file").expect("ExecStart has a --log-file");
    let logs = single(&settings, "LogsDirectory");
    let dir = Path::new(log_file).parent().unwrap();
    assert_eq!(
        dir,
        Path::new("/var/log").join(logs),
        "--log-file {log_file} is not in LogsDirectory={logs}: the sandbox would refuse it"
    );

    let chapter =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operating.md"))
            .expect("read docs/operating.md");
    let rotated: Vec<&str> = chapter
        .split("# /etc/logrotate.d/wharf")
        .skip(1)
        .filter_map(|rest| rest.lines().nth(1))
        .map(|line| line.trim_end_matches('{').trim())
        .collect();
    assert_eq!(rotated, [log_file], "operating.md's logrotate example");
}

/// The install line enables the service as well as the socket: with the
/// socket alone, wharf starts only at the first connection, so /metrics and
/// /ready do not exist after boot and logrotate's SIGHUP finds no process.
#[test]
fn the_install_line_enables_the_service_and_the_socket() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/wharf.service"))
            .expect("deploy/wharf.service");
    let line = text
        .lines()
        .find(|l| l.contains("systemctl") && l.contains("enable"))
        .expect("an install line");
    assert!(line.contains("wharf.socket"), "{line}");
    assert!(line.contains("wharf.service"), "{line}");
    let install = text
        .split("[Install]")
        .nth(1)
        .expect("an [Install] section");
    assert!(install.contains("WantedBy=multi-user.target"), "{install}");
}
