//! CloudWatch's Smithy RPC v2 CBOR for the fake endpoint: reads a `PutMetricData` body (datums,
//! samples, the sum of the values) and writes the little CBOR an answer needs.
//!
//! It reads only what a `PutMetricData` body holds (RFC 8949, definite and indefinite lengths)
//! and never allocates per byte; a body it cannot read is an error, never a panic.

use std::io::Read as _;

/// A decoded CBOR item: only what a PutMetricData body holds.
#[derive(Debug, Clone)]
enum Cbor {
    Int(i128),
    Float(f64),
    Text(String),
    Bytes,
    Array(Vec<Cbor>),
    Map(Vec<(Cbor, Cbor)>),
    Other,
}

impl Cbor {
    fn get(&self, key: &str) -> Option<&Cbor> {
        match self {
            Cbor::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Cbor::Text(t) if t == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Cbor::Int(i) => Some(*i as f64),
            Cbor::Float(f) => Some(*f),
            _ => None,
        }
    }

    fn items(&self) -> &[Cbor] {
        match self {
            Cbor::Array(items) => items,
            _ => &[],
        }
    }
}

/// A CBOR reader over one body (RFC 8949; definite and indefinite lengths).
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.bytes.get(self.at).ok_or("truncated")?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).ok_or("length")?;
        let slice = self.bytes.get(self.at..end).ok_or("truncated")?;
        self.at = end;
        Ok(slice)
    }

    /// The argument of an initial byte; `None` for an indefinite length.
    fn argument(&mut self, info: u8) -> Result<Option<u64>, String> {
        let width = match info {
            0..=23 => return Ok(Some(u64::from(info))),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            31 => return Ok(None),
            _ => return Err(format!("reserved additional info {info}")),
        };
        let raw = self.take(width)?;
        Ok(Some(
            raw.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
        ))
    }

    fn item(&mut self) -> Result<Cbor, String> {
        let initial = self.byte()?;
        let (major, info) = (initial >> 5, initial & 0x1f);
        if major == 7 {
            return self.simple(info);
        }
        let argument = self.argument(info)?;
        match (major, argument) {
            (0, Some(n)) => Ok(Cbor::Int(i128::from(n))),
            (1, Some(n)) => Ok(Cbor::Int(-1 - i128::from(n))),
            (2, _) => self.string(argument, 2).map(|_| Cbor::Bytes),
            (3, _) => self
                .string(argument, 3)
                .map(|raw| Cbor::Text(String::from_utf8_lossy(&raw).into_owned())),
            (4, _) => {
                let mut items = Vec::new();
                while self.more(items.len(), argument)? {
                    items.push(self.item()?);
                }
                Ok(Cbor::Array(items))
            }
            (5, _) => {
                let mut entries = Vec::new();
                while self.more(entries.len(), argument)? {
                    let key = self.item()?;
                    entries.push((key, self.item()?));
                }
                Ok(Cbor::Map(entries))
            }
            (6, _) => self.item(), // a tag: the tagged item stands for itself here
            _ => Err(format!("bad initial byte {initial:#04x}")),
        }
    }

    /// Whether another element follows: by count, or until the break byte (indefinite).
    fn more(&mut self, done: usize, argument: Option<u64>) -> Result<bool, String> {
        match argument {
            Some(n) => Ok((done as u64) < n),
            None => {
                if self.bytes.get(self.at) == Some(&0xff) {
                    self.at += 1;
                    Ok(false)
                } else {
                    Ok(true)
                }
            }
        }
    }

    fn string(&mut self, argument: Option<u64>, major: u8) -> Result<Vec<u8>, String> {
        match argument {
            Some(n) => Ok(self
                .take(usize::try_from(n).map_err(|_| "length")?)?
                .to_vec()),
            None => {
                let mut out = Vec::new();
                while self.bytes.get(self.at) != Some(&0xff) {
                    let initial = self.byte()?;
                    if initial >> 5 != major {
                        return Err("bad chunk".into());
                    }
                    let n = self.argument(initial & 0x1f)?.ok_or("nested indefinite")?;
                    out.extend_from_slice(self.take(usize::try_from(n).map_err(|_| "length")?)?);
                }
                self.at += 1;
                Ok(out)
            }
        }
    }

    fn simple(&mut self, info: u8) -> Result<Cbor, String> {
        match info {
            25 => {
                let raw = self.take(2)?;
                Ok(Cbor::Float(half(u16::from_be_bytes([raw[0], raw[1]]))))
            }
            26 => {
                let raw = self.take(4)?;
                Ok(Cbor::Float(f64::from(f32::from_be_bytes([
                    raw[0], raw[1], raw[2], raw[3],
                ]))))
            }
            27 => {
                let raw = self.take(8)?;
                let mut b = [0u8; 8];
                b.copy_from_slice(raw);
                Ok(Cbor::Float(f64::from_be_bytes(b)))
            }
            24 => self.take(1).map(|_| Cbor::Other),
            0..=23 => Ok(Cbor::Other),
            _ => Err(format!("bad simple value {info}")),
        }
    }
}

/// An IEEE 754 half-precision float.
fn half(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let fraction = f64::from(bits & 0x3ff);
    sign * match exponent {
        0 => fraction * 2f64.powi(-24),
        31 if fraction == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + fraction / 1024.0) * 2f64.powi(e - 15),
    }
}

/// (datums, samples, sum) of a PutMetricData request.
pub fn put_metric_data(body: &[u8]) -> Result<(u64, u64, f64), String> {
    let mut reader = Reader { bytes: body, at: 0 };
    let root = reader.item()?;
    let data = root.get("MetricData").ok_or("no MetricData")?.items();
    let (mut samples, mut sum) = (0u64, 0.0f64);
    for datum in data {
        let (n, s) = datum_samples(datum);
        samples += n;
        sum += s;
    }
    Ok((data.len() as u64, samples, sum))
}

fn datum_samples(datum: &Cbor) -> (u64, f64) {
    if let Some(values) = datum.get("Values") {
        let values = values.items();
        let counts: Vec<f64> = datum
            .get("Counts")
            .map(|c| c.items().iter().filter_map(Cbor::number).collect())
            .unwrap_or_default();
        let mut samples = 0.0;
        let mut sum = 0.0;
        for (i, value) in values.iter().enumerate() {
            let count = counts.get(i).copied().unwrap_or(1.0);
            samples += count;
            sum += value.number().unwrap_or(0.0) * count;
        }
        return (samples.round() as u64, sum);
    }
    if let Some(stats) = datum.get("StatisticValues") {
        let samples = stats
            .get("SampleCount")
            .and_then(Cbor::number)
            .unwrap_or(0.0);
        let sum = stats.get("Sum").and_then(Cbor::number).unwrap_or(0.0);
        return (samples.round() as u64, sum);
    }
    (1, datum.get("Value").and_then(Cbor::number).unwrap_or(0.0))
}

/// The body undone from gzip (the SDK compresses bodies of 10 KiB and more).
pub fn gunzip(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// An empty CBOR map: the answer to an accepted CloudWatch call.
pub const EMPTY_MAP: &[u8] = &[0xa0];

/// The CBOR error body `{"__type": error_type, "message": message}` (both shorter than 24
/// bytes, so each length fits the initial byte).
pub fn error_body(error_type: &str, message: &str) -> Vec<u8> {
    let mut out = vec![0xa2];
    for text in ["__type", error_type, "message", message] {
        text_string(&mut out, text);
    }
    out
}

fn text_string(out: &mut Vec<u8>, text: &str) {
    match u8::try_from(text.len()) {
        Ok(n) if n < 24 => out.push(0x60 | n),
        Ok(n) => out.extend_from_slice(&[0x78, n]),
        Err(_) => {
            let n = u32::try_from(text.len()).unwrap_or(u32::MAX);
            out.push(0x7a);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    out.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_the_error_it_writes() {
        let body = error_body("ThrottlingException", "Rate exceeded");
        let item = Reader {
            bytes: &body,
            at: 0,
        }
        .item()
        .expect("the body is CBOR");
        assert!(matches!(item.get("__type"), Some(Cbor::Text(t)) if t == "ThrottlingException"));
        assert!(matches!(item.get("message"), Some(Cbor::Text(t)) if t == "Rate exceeded"));
    }

    #[test]
    fn counts_datums_samples_and_sum() {
        // {"MetricData": [{"Value": 2}, {"Values": [1.5], "Counts": [4]}]}
        let mut body = vec![0xa1];
        text_string(&mut body, "MetricData");
        body.push(0x82);
        body.push(0xa1);
        text_string(&mut body, "Value");
        body.push(0x02);
        body.push(0xa2);
        text_string(&mut body, "Values");
        body.extend_from_slice(&[0x81, 0xf9, 0x3e, 0x00]); // half-precision 1.5
        text_string(&mut body, "Counts");
        body.extend_from_slice(&[0x81, 0x04]);
        assert_eq!(put_metric_data(&body), Ok((2, 5, 8.0)));
        assert!(put_metric_data(&body[..body.len() - 1]).is_err());
    }
}
