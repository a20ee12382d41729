//! Figures as a sentence writes them: `20,000` req/s, `1.2 ms`.
//!
//! The shortfall of a point, the recommendation's reason and the plot all
//! speak in these words, so they live apart from any of them.

/// `20,000` for 20000.4: a rate as a sentence writes it.
pub fn human_rate(rps: f64) -> String {
    let n = rps.round().max(0.0) as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `850 us`, `1.2 ms`, `3.05 s`: a duration in microseconds as a sentence
/// writes it.
pub fn human_us(us: f64) -> String {
    let trim = |text: String| {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            text
        }
    };
    match us {
        us if us >= 1e6 => format!("{} s", trim(format!("{:.2}", us / 1e6))),
        us if us >= 1e3 => format!("{} ms", trim(format!("{:.1}", us / 1e3))),
        us => format!("{us:.0} us"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_write_rates_and_durations_readably() {
        assert_eq!(human_rate(20_000.4), "20,000");
        assert_eq!(human_rate(999.0), "999");
        assert_eq!(human_rate(1_234_567.0), "1,234,567");
        assert_eq!(human_us(850.0), "850 us");
        assert_eq!(human_us(1_000.0), "1 ms");
        assert_eq!(human_us(1_250.0), "1.2 ms");
        assert_eq!(human_us(3_050_000.0), "3.05 s");
    }
}
