//! EBS volume types and the performance each may be given: what `CreateVolume` accepts, with
//! AWS's defaults filled in, so that a restored volume performs as the original did and a
//! request AWS would refuse is refused here first, with the same code.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An EBS volume type (`VolumeType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeType {
    /// General purpose SSD whose IOPS follow its size (3 per GiB, 100 to 16,000).
    Gp2,
    /// General purpose SSD with IOPS and throughput provisioned apart from its size.
    Gp3,
    /// Provisioned IOPS SSD.
    Io1,
    /// Provisioned IOPS SSD, Block Express.
    Io2,
    /// Throughput optimised HDD.
    St1,
    /// Cold HDD.
    Sc1,
    /// Magnetic (previous generation).
    Standard,
}

/// A volume's type with its provisioned IOPS and throughput, AWS's defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Performance {
    /// The type.
    pub volume_type: VolumeType,
    /// IOPS (gp2: its baseline; gp3, io1, io2: provisioned; HDD types: none).
    pub iops: Option<u32>,
    /// Throughput in MiB/s (gp3 only).
    pub throughput: Option<u32>,
}

/// Why AWS refuses a volume type with the size, IOPS or throughput asked: its error code and
/// message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// `InvalidParameterValue`, `InvalidParameterCombination` or `MissingParameter`.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

const ALL: [VolumeType; 7] = [
    VolumeType::Gp2,
    VolumeType::Gp3,
    VolumeType::Io1,
    VolumeType::Io2,
    VolumeType::St1,
    VolumeType::Sc1,
    VolumeType::Standard,
];

impl VolumeType {
    /// The name AWS gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeType::Gp2 => "gp2",
            VolumeType::Gp3 => "gp3",
            VolumeType::Io1 => "io1",
            VolumeType::Io2 => "io2",
            VolumeType::St1 => "st1",
            VolumeType::Sc1 => "sc1",
            VolumeType::Standard => "standard",
        }
    }

    /// Sizes it may have, in GiB.
    fn sizes(self) -> (u32, u32) {
        match self {
            VolumeType::Gp2 | VolumeType::Gp3 => (1, 16_384),
            VolumeType::Io1 => (4, 16_384),
            VolumeType::Io2 => (4, crate::MAX_VOLUME_GIB),
            VolumeType::St1 | VolumeType::Sc1 => (125, 16_384),
            VolumeType::Standard => (1, 1_024),
        }
    }

    /// IOPS it may be given, if any may be.
    fn iops(self) -> Option<(u32, u32)> {
        match self {
            VolumeType::Gp3 => Some((3_000, 80_000)),
            VolumeType::Io1 => Some((100, 64_000)),
            VolumeType::Io2 => Some((100, 256_000)),
            _ => None,
        }
    }

    /// `size_gib`, `iops` and `throughput` (MiB/s) checked against the type's rules (those of
    /// `CreateVolume`), with AWS's defaults where none is given: gp3 3,000 IOPS and 125 MiB/s,
    /// gp2 3 IOPS per GiB within 100 and 16,000; io1 and io2 need their IOPS.
    pub fn performance(
        self,
        size_gib: u32,
        iops: Option<u32>,
        throughput: Option<u32>,
    ) -> Result<Performance, Refused> {
        let invalid = |message: String| Refused {
            code: "InvalidParameterValue",
            message,
        };
        let (min, max) = self.sizes();
        if !(min..=max).contains(&size_gib) {
            return Err(invalid(format!(
                "a {self} volume must be between {min} and {max} GiB, not {size_gib}"
            )));
        }
        if throughput.is_some() && self != VolumeType::Gp3 {
            return Err(Refused {
                code: "InvalidParameterCombination",
                message: format!("throughput can be given to gp3 volumes only, not to {self}"),
            });
        }
        let iops = match (self.iops(), iops) {
            (None, Some(_)) => {
                return Err(Refused {
                    code: "InvalidParameterCombination",
                    message: format!("IOPS can be given to gp3, io1 and io2 volumes only, not to {self}"),
                })
            }
            (Some((lo, hi)), Some(n)) if !(lo..=hi).contains(&n) => {
                return Err(invalid(format!(
                    "a {self} volume takes between {lo} and {hi} IOPS, not {n}"
                )))
            }
            (Some(_), Some(n)) => Some(n),
            (Some(_), None) if self == VolumeType::Gp3 => Some(3_000),
            (Some(_), None) => {
                return Err(Refused {
                    code: "MissingParameter",
                    message: format!("a {self} volume needs its IOPS"),
                })
            }
            (None, None) if self == VolumeType::Gp2 => Some(size_gib.saturating_mul(3).clamp(100, 16_000)),
            (None, None) => None,
        };
        let throughput = match (self, throughput) {
            (VolumeType::Gp3, Some(t)) if !(125..=2_000).contains(&t) => {
                return Err(invalid(format!(
                    "a gp3 volume takes between 125 and 2000 MiB/s, not {t}"
                )))
            }
            (VolumeType::Gp3, t) => Some(t.unwrap_or(125)),
            _ => None,
        };
        Ok(Performance {
            volume_type: self,
            iops,
            throughput,
        })
    }
}

impl fmt::Display for VolumeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VolumeType {
    type Err = String;

    fn from_str(s: &str) -> Result<VolumeType, String> {
        ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| {
            format!(
                "{s:?} is not an EBS volume type; one of {}",
                ALL.map(VolumeType::as_str).join(", ")
            )
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_awss() {
        let gp3 = VolumeType::Gp3.performance(8, None, None).unwrap();
        assert_eq!((gp3.iops, gp3.throughput), (Some(3_000), Some(125)));
        assert_eq!(
            VolumeType::Gp2.performance(8, None, None).unwrap().iops,
            Some(100)
        );
        assert_eq!(
            VolumeType::Gp2.performance(1_000, None, None).unwrap().iops,
            Some(3_000)
        );
        assert_eq!(VolumeType::St1.performance(500, None, None).unwrap().iops, None);
    }

    #[test]
    fn what_aws_refuses_is_refused_with_its_code() {
        let code =
            |t: VolumeType, size, iops, throughput| t.performance(size, iops, throughput).unwrap_err().code;
        assert_eq!(code(VolumeType::Io2, 100, None, None), "MissingParameter");
        assert_eq!(
            code(VolumeType::Gp2, 100, Some(3_000), None),
            "InvalidParameterCombination"
        );
        assert_eq!(
            code(VolumeType::Io1, 100, Some(1_000), Some(250)),
            "InvalidParameterCombination"
        );
        assert_eq!(
            code(VolumeType::Gp3, 100, Some(2_000), None),
            "InvalidParameterValue"
        );
        assert_eq!(
            code(VolumeType::Gp3, 100, None, Some(4_000)),
            "InvalidParameterValue"
        );
        assert_eq!(code(VolumeType::Sc1, 10, None, None), "InvalidParameterValue");
    }

    #[test]
    fn names_round_trip() {
        for t in ALL {
            assert_eq!(t.as_str().parse::<VolumeType>().unwrap(), t);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{t}\""));
        }
        assert!("gp4".parse::<VolumeType>().unwrap_err().contains("gp3"));
    }
}
