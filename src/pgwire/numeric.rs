//! PostgreSQL's `numeric` on the wire: its binary form (base-10000 digits with a weight, a
//! sign and a display scale, as `numeric_send` writes it) to and from decimal text. Written
//! here because the crates that do it pull in a decimal type Shoal has no other use for, and
//! SQLite's values are integers, reals or text anyway.

const SIGN_POSITIVE: u16 = 0x0000;
const SIGN_NEGATIVE: u16 = 0x4000;
const SIGN_NAN: u16 = 0xC000;
const SIGN_INFINITY: u16 = 0xD000;
const SIGN_NEGATIVE_INFINITY: u16 = 0xF000;
/// PostgreSQL's limit on a numeric's base-10000 digits (its NUMERIC_MAX_PRECISION is far
/// smaller; this bounds what a message can make Shoal allocate).
const DIGITS_MAX: usize = 16_384;

/// The binary form of the decimal `text` (`-12.50`, `NaN`, `Infinity`); `None` when it is
/// not a plain decimal number.
pub fn encode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    let header = |sign: u16| {
        let mut out = Vec::with_capacity(8);
        out.extend(0i16.to_be_bytes());
        out.extend(0i16.to_be_bytes());
        out.extend(sign.to_be_bytes());
        out.extend(0i16.to_be_bytes());
        out
    };
    match text.to_ascii_lowercase().as_str() {
        "nan" => return Some(header(SIGN_NAN)),
        "infinity" | "+infinity" | "inf" => return Some(header(SIGN_INFINITY)),
        "-infinity" | "-inf" => return Some(header(SIGN_NEGATIVE_INFINITY)),
        _ => {}
    }
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if (whole.is_empty() && fraction.is_empty())
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
        || whole.len() + fraction.len() > DIGITS_MAX * 4
    {
        return None;
    }
    let scale = i16::try_from(fraction.len()).ok()?;
    // Whole digits padded on the left, fraction digits on the right, to groups of four.
    let whole_padded = format!("{}{whole}", "0".repeat((4 - whole.len() % 4) % 4));
    let fraction_padded = format!("{fraction}{}", "0".repeat((4 - fraction.len() % 4) % 4));
    let group = |chunk: &[u8]| -> i16 {
        chunk
            .iter()
            .fold(0i16, |value, digit| value * 10 + i16::from(digit - b'0'))
    };
    let mut groups: Vec<i16> = whole_padded
        .as_bytes()
        .chunks(4)
        .chain(fraction_padded.as_bytes().chunks(4))
        .map(group)
        .collect();
    let mut weight = i16::try_from(whole_padded.len() / 4).ok()? - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let sign = if negative && !groups.is_empty() {
        SIGN_NEGATIVE
    } else {
        SIGN_POSITIVE
    };
    let mut out = Vec::with_capacity(8 + groups.len() * 2);
    out.extend(i16::try_from(groups.len()).ok()?.to_be_bytes());
    out.extend(weight.to_be_bytes());
    out.extend(sign.to_be_bytes());
    out.extend(scale.to_be_bytes());
    for digit in groups {
        out.extend(digit.to_be_bytes());
    }
    Some(out)
}

/// The decimal text of a binary numeric; `Err` names what is malformed.
pub fn decode(bytes: &[u8]) -> Result<String, String> {
    let field = |at: usize| -> Result<[u8; 2], String> {
        bytes
            .get(at..at + 2)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| "a binary numeric parameter is truncated".to_string())
    };
    let count = usize::try_from(i16::from_be_bytes(field(0)?))
        .map_err(|_| "a binary numeric parameter has a negative digit count".to_string())?;
    let weight = i32::from(i16::from_be_bytes(field(2)?));
    let sign = u16::from_be_bytes(field(4)?);
    let scale = usize::try_from(i16::from_be_bytes(field(6)?))
        .map_err(|_| "a binary numeric parameter has a negative scale".to_string())?;
    match sign {
        SIGN_NAN => return Ok("NaN".into()),
        SIGN_INFINITY => return Ok("Infinity".into()),
        SIGN_NEGATIVE_INFINITY => return Ok("-Infinity".into()),
        SIGN_POSITIVE | SIGN_NEGATIVE => {}
        other => return Err(format!("a binary numeric parameter has sign {other:#x}")),
    }
    if bytes.len() != 8 + count * 2 || count > DIGITS_MAX || scale > DIGITS_MAX * 4 {
        return Err("a binary numeric parameter has the wrong size".into());
    }
    let mut digits = Vec::with_capacity(count);
    for at in 0..count {
        let digit = i16::from_be_bytes(field(8 + at * 2)?);
        if !(0..10_000).contains(&digit) {
            return Err(format!("a binary numeric parameter has the digit {digit}"));
        }
        digits.push(digit);
    }
    // Group g (0-based) has weight `weight - g`: weight 0 is units, -1 the first four
    // fraction digits.
    let group_at = |w: i32| -> i16 {
        usize::try_from(weight - w)
            .ok()
            .and_then(|g| digits.get(g).copied())
            .unwrap_or(0)
    };
    let mut whole = String::new();
    for w in (0..=weight.max(0)).rev() {
        whole.push_str(&format!("{:04}", group_at(w)));
    }
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let mut fraction = String::new();
    let mut w = -1;
    while fraction.len() < scale {
        fraction.push_str(&format!("{:04}", group_at(w)));
        w -= 1;
    }
    fraction.truncate(scale);
    let negative = sign == SIGN_NEGATIVE && digits.iter().any(|d| *d != 0);
    Ok(format!(
        "{}{whole}{}{fraction}",
        if negative { "-" } else { "" },
        if scale > 0 { "." } else { "" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(values: &[i16]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    #[test]
    fn numbers_take_postgresql_binary_form() {
        // 123.45: 2 digits, weight 0, positive, scale 2, [123, 4500] (numeric.c's example).
        assert_eq!(encode("123.45"), Some(words(&[2, 0, 0, 2, 123, 4500])));
        assert_eq!(
            encode("-10000.5"),
            Some(words(&[3, 1, 0x4000, 1, 1, 0, 5000]))
        );
        assert_eq!(encode("0.0001"), Some(words(&[1, -1, 0, 4, 1])));
        assert_eq!(encode("0"), Some(words(&[0, 0, 0, 0])));
        assert_eq!(encode("1e5"), None);
        assert_eq!(encode("NaN"), Some(words(&[0, 0, 0xC000u16 as i16, 0])));
    }

    #[test]
    fn binary_numerics_read_back_as_written() {
        for text in [
            "123.45",
            "-10000.5",
            "0.0001",
            "0",
            "12.50",
            "99999999.99",
            "-0.5",
        ] {
            let bytes = encode(text).unwrap();
            assert_eq!(decode(&bytes).as_deref(), Ok(text), "{text}");
        }
        assert!(decode(&[0, 1]).is_err());
        assert!(decode(&words(&[1, 0, 0, 0, 10_000])).is_err());
    }
}
