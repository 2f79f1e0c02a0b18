//! Reading `probe.*` options out of /chosen/bootargs (space-separated `key=value` words).

/// The text after `prefix` in the first word of `bootargs` that starts with it.
pub fn value<'a>(bootargs: &'a str, prefix: &str) -> Option<&'a str> {
    bootargs.split(' ').find_map(|arg| arg.strip_prefix(prefix))
}

/// The number after `prefix` in `bootargs`, if there is one.
pub fn number(bootargs: &str, prefix: &str) -> Option<u64> {
    value(bootargs, prefix).and_then(parse_number)
}

/// `FROM-TO` after `prefix` (two numbers, FROM < TO): `None` when the word is absent,
/// `Some(Err(text))` when it is malformed.
pub fn range<'a>(bootargs: &'a str, prefix: &str) -> Option<Result<(u64, u64), &'a str>> {
    let text = value(bootargs, prefix)?;
    let range = text
        .split_once('-')
        .and_then(|(from, to)| Some((parse_number(from)?, parse_number(to)?)))
        .filter(|(from, to)| from < to);
    Some(range.ok_or(text))
}

/// A decimal or `0x` hexadecimal number.
pub fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_decimal_or_hex_and_prefixes_do_not_overlap() {
        let args = "console=ttyAMA0 probe.pingpong=ping probe.pingpong_rounds=50 probe.touch_ipa=0x80000000";
        assert_eq!(value(args, "probe.pingpong="), Some("ping"));
        assert_eq!(number(args, "probe.pingpong_rounds="), Some(50));
        assert_eq!(number(args, "probe.touch_ipa="), Some(0x8000_0000));
        assert_eq!(number(args, "probe.reboots="), None);
        assert_eq!(number("probe.reboots=x", "probe.reboots="), None);
    }

    #[test]
    fn ranges_need_two_numbers_in_order() {
        assert_eq!(
            range("probe.spin=2000-4000", "probe.spin="),
            Some(Ok((2000, 4000)))
        );
        assert_eq!(
            range("a=1 probe.spin=0x10-0x20", "probe.spin="),
            Some(Ok((16, 32)))
        );
        assert_eq!(
            range("probe.spin=4000-2000", "probe.spin="),
            Some(Err("4000-2000"))
        );
        assert_eq!(range("probe.spin=5-5", "probe.spin="), Some(Err("5-5")));
        assert_eq!(range("probe.spin=2000", "probe.spin="), Some(Err("2000")));
        assert_eq!(range("probe.spin=-3", "probe.spin="), Some(Err("-3")));
        assert_eq!(range("probe.fpcheck=3", "probe.spin="), None);
    }
}
