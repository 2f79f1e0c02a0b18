//! Reading `probe.*` options out of /chosen/bootargs (space-separated `key=value` words).

/// The text after `prefix` in the first word of `bootargs` that starts with it.
pub fn value<'a>(bootargs: &'a str, prefix: &str) -> Option<&'a str> {
    bootargs.split(' ').find_map(|arg| arg.strip_prefix(prefix))
}

/// The number after `prefix` in `bootargs`, if there is one.
pub fn number(bootargs: &str, prefix: &str) -> Option<u64> {
    value(bootargs, prefix).and_then(parse_number)
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
}
