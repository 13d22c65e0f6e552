//! The EC2 instance a program runs on, as [`InstanceHost`]: what `bulwark worker` sees on a
//! worker instance. Its instance id and region come from the instance metadata service
//! (IMDSv2), its credentials from the instance profile (the SDK's standard chain, through
//! [`AwsCloud::appliance_credentials`]), and its attached EBS volumes are the block devices of
//! the machine ([`open_device`]).
//!
//! Set `AWS_EC2_METADATA_SERVICE_ENDPOINT` to reach another metadata service (a test's).

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_config::imds::client::Client as ImdsClient;
use aws_config::provider_config::ProviderConfig;
use aws_config::BehaviorVersion;
use bulwark_cloud::{Cloud, CloudError, Credentials, ErrorKind};
use bulwark_host::{Device, InstanceHost};
use bulwark_model::{Action, InstanceId, Region, VolumeId};

use crate::AwsCloud;

/// How long to wait for the metadata service to accept a connection: it is on the instance's
/// link, so it answers at once or not at all.
const IMDS_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Attempts per metadata request.
const IMDS_ATTEMPTS: u32 = 3;

/// Why the program cannot run as an instance's program here.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The instance metadata service did not answer: this is not an EC2 instance, or its
    /// metadata service is off or refuses IMDSv2 tokens.
    #[error(
        "bulwark worker must run on an EC2 worker instance: the instance metadata service (IMDSv2) \
         did not give the {what}: {reason}. On EC2, check the instance's metadata options: \
         HttpEndpoint enabled (IMDSv2 tokens are used)"
    )]
    NoMetadata {
        /// What was asked (`instance id`, `region`).
        what: &'static str,
        /// The metadata client's error.
        reason: String,
    },
    /// The metadata service answered something that is not what was asked.
    #[error("the instance metadata service gave {value:?} as the {what}: {reason}")]
    Malformed {
        /// What was asked.
        what: &'static str,
        /// The answer.
        value: String,
        /// Why it does not do.
        reason: String,
    },
}

/// The EC2 instance this program runs on.
pub struct AwsHost {
    cloud: Arc<AwsCloud>,
    instance: InstanceId,
    region: Region,
}

impl std::fmt::Debug for AwsHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsHost")
            .field("instance", &self.instance)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl AwsHost {
    /// Asks the instance metadata service which instance this is and in which region; fails
    /// in seconds off EC2.
    pub fn new(cloud: Arc<AwsCloud>) -> Result<AwsHost, HostError> {
        let config = ProviderConfig::default()
            .with_http_client(bulwark_s3::http_client())
            .with_behavior_version(Some(BehaviorVersion::latest()));
        let imds = ImdsClient::builder()
            .configure(&config)
            .connect_timeout(IMDS_CONNECT_TIMEOUT)
            .max_attempts(IMDS_ATTEMPTS)
            .build();
        let get = |what: &'static str, path: &'static str| {
            cloud
                .runtime
                .block_on(imds.get(path))
                .map(|value| value.as_ref().trim().to_owned())
                .map_err(|e| HostError::NoMetadata {
                    what,
                    reason: error_chain(&e),
                })
        };
        let instance = get("instance id", "/latest/meta-data/instance-id")?;
        let instance = instance
            .parse()
            .map_err(|e: bulwark_model::InvalidId| HostError::Malformed {
                what: "instance id",
                value: instance,
                reason: e.to_string(),
            })?;
        let region = get("region", "/latest/meta-data/placement/region")?;
        let region = region
            .parse()
            .map_err(|e: bulwark_model::InvalidId| HostError::Malformed {
                what: "region",
                value: region,
                reason: e.to_string(),
            })?;
        Ok(AwsHost {
            cloud,
            instance,
            region,
        })
    }
}

/// An error and its causes, on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

impl InstanceHost for AwsHost {
    fn instance_id(&self) -> &InstanceId {
        &self.instance
    }

    fn region(&self) -> &Region {
        &self.region
    }

    /// The instance profile's role credentials (through the SDK's standard chain, which on a
    /// worker instance ends at the instance metadata service).
    fn credentials(&self) -> Result<Credentials, CloudError> {
        self.cloud.appliance_credentials().map_err(|e| {
            CloudError::new(
                Action::StsAssumeRole,
                ErrorKind::Unavailable,
                "NoInstanceProfileCredentials",
                format!(
                    "{e}; check that {} has an instance profile whose role trusts ec2.amazonaws.com",
                    self.instance
                ),
            )
        })
    }

    fn device(&self, name: &str, volume: Option<&VolumeId>) -> io::Result<Arc<dyn Device>> {
        Ok(Arc::new(open_device(name, volume)?))
    }

    fn cloud(&self) -> Cloud {
        Cloud::of(self.cloud.clone())
    }

    /// A program on the instance runs until the instance stops it.
    fn running(&self) -> bool {
        true
    }
}

/// A block device (or, in tests, a file) opened for reading and writing.
#[derive(Debug)]
pub struct BlockDevice {
    file: File,
    path: PathBuf,
    size: u64,
}

impl BlockDevice {
    /// Opens `path` for reading and writing; its size is where a seek to its end lands.
    pub fn open(path: &Path) -> io::Result<BlockDevice> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| {
                let check = if e.kind() == io::ErrorKind::PermissionDenied {
                    "run bulwark worker as root (cloud-init runs user data as root)"
                } else {
                    "check that the volume is attached to this instance (lsblk)"
                };
                io::Error::new(e.kind(), format!("cannot open {}: {e}; {check}", path.display()))
            })?;
        let size = file.seek(SeekFrom::End(0)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot find the size of {}: {e}", path.display()),
            )
        })?;
        Ok(BlockDevice {
            file,
            path: path.to_owned(),
            size,
        })
    }

    /// The path it was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn context(&self, what: &str, offset: u64, e: io::Error) -> io::Error {
        io::Error::new(
            e.kind(),
            format!("{what} {} at byte {offset}: {e}", self.path.display()),
        )
    }
}

impl Device for BlockDevice {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| self.context("cannot read", offset, e))
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset.saturating_add(data.len() as u64) > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cannot write {} bytes at byte {offset} of {}: it holds {} bytes; the restore \
                     point is larger than the volume",
                    data.len(),
                    self.path.display(),
                    self.size
                ),
            ));
        }
        self.file
            .write_all_at(data, offset)
            .map_err(|e| self.context("cannot write", offset, e))
    }

    fn flush(&self) -> io::Result<()> {
        self.file
            .sync_all()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot flush {}: {e}", self.path.display())))
    }
}

/// The block device of the EBS volume attached as `name` (`/dev/sdf`): the name itself (on
/// Xen instances, or where udev links it, as Amazon Linux does), its `xvd` form (`/dev/xvdf`),
/// and on Nitro instances the NVMe device whose serial number is `volume`'s id.
pub fn open_device(name: &str, volume: Option<&VolumeId>) -> io::Result<BlockDevice> {
    open_device_in(name, volume, Path::new("/sys/block"), Path::new("/dev"))
}

/// [`open_device`] with the NVMe devices listed in `sys_block` and found in `dev`.
fn open_device_in(
    name: &str,
    volume: Option<&VolumeId>,
    sys_block: &Path,
    dev: &Path,
) -> io::Result<BlockDevice> {
    let mut tried = vec![PathBuf::from(name)];
    if let Some(rest) = name.strip_prefix("/dev/sd") {
        tried.push(PathBuf::from(format!("/dev/xvd{rest}")));
    }
    if let Some(path) = tried.iter().find(|p| p.exists()) {
        return BlockDevice::open(path);
    }
    let nvme = match volume {
        Some(volume) => {
            if let Some(path) = nvme_device(volume, sys_block, dev) {
                return BlockDevice::open(&path);
            }
            format!(
                " and the NVMe devices of {} (none has the serial number {})",
                sys_block.display(),
                nvme_serial(volume)
            )
        }
        None => " (the task names no volume id to find an NVMe device by)".into(),
    };
    let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    let volume = volume.map(|v| format!(" ({v})")).unwrap_or_default();
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "no block device for the volume{volume} attached as {name}: tried {}{nvme}; check that the \
             volume is attached to this instance (ec2:DescribeVolumes shows its attachment) and \
             that the instance sees it (lsblk)",
            tried.join(", ")
        ),
    ))
}

/// The serial number an NVMe EBS device reports: the volume id without its dash.
fn nvme_serial(volume: &VolumeId) -> String {
    volume.as_str().replacen('-', "", 1)
}

/// The device in `dev` of the NVMe namespace in `sys_block` whose controller's serial number is
/// `volume`'s.
fn nvme_device(volume: &VolumeId, sys_block: &Path, dev: &Path) -> Option<PathBuf> {
    let serial = nvme_serial(volume);
    let mut names: Vec<String> = std::fs::read_dir(sys_block)
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("nvme"))
        .collect();
    names.sort();
    names.into_iter().find_map(|name| {
        let found = std::fs::read_to_string(sys_block.join(&name).join("device/serial")).ok()?;
        (found.trim() == serial).then(|| dev.join(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume() -> VolumeId {
        "vol-0123456789abcdef0".parse().expect("a volume id")
    }

    #[test]
    fn a_file_is_a_device_that_reads_writes_and_flushes() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("disk");
        std::fs::write(&path, vec![7u8; 1 << 20]).expect("write the disk");
        let device = open_device(path.to_str().expect("UTF-8"), None).expect("open");
        assert_eq!(device.size(), 1 << 20);
        assert_eq!(device.path(), path);
        device.write_at(4096, b"bulwark").expect("write");
        device.flush().expect("flush");
        let mut buf = [0u8; 9];
        device.read_at(4095, &mut buf).expect("read");
        assert_eq!(&buf, b"\x07bulwark\x07");
        assert_eq!(device.written_blocks(), None);
        // Past the end: errors naming the device, and the file does not grow.
        let e = device.write_at((1 << 20) - 2, b"abc").expect_err("past the end");
        assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
        let e = device.read_at((1 << 20) - 2, &mut buf).expect_err("past the end");
        assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
        assert_eq!(std::fs::metadata(&path).expect("metadata").len(), 1 << 20);
    }

    #[test]
    fn a_missing_device_names_every_path_tried() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let e = open_device_in("/dev/sdzz", Some(&volume()), dir.path(), dir.path()).expect_err("missing");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let message = e.to_string();
        for part in [
            "/dev/sdzz",
            "/dev/xvdzz",
            "vol0123456789abcdef0",
            "vol-0123456789abcdef0",
            "attached",
        ] {
            assert!(message.contains(part), "{part}: {message}");
        }
        let e = open_device_in("/dev/sdzz", None, dir.path(), dir.path()).expect_err("missing");
        assert!(e.to_string().contains("no volume id"), "{e}");
    }

    #[test]
    fn an_nvme_device_is_found_by_its_serial_number() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (sys, dev) = (dir.path().join("sys"), dir.path().join("dev"));
        for (name, serial) in [
            ("nvme0n1", "vol0fedcba9876543210"),
            ("nvme1n1", "vol0123456789abcdef0"),
        ] {
            std::fs::create_dir_all(sys.join(name).join("device")).expect("mkdir");
            std::fs::write(sys.join(name).join("device/serial"), format!("{serial}  \n")).expect("serial");
        }
        std::fs::create_dir_all(&dev).expect("mkdir");
        std::fs::write(dev.join("nvme1n1"), vec![0u8; 8192]).expect("device");
        let device = open_device_in("/dev/sdzz", Some(&volume()), &sys, &dev).expect("found");
        assert_eq!(device.path(), dev.join("nvme1n1"));
        assert_eq!(device.size(), 8192);
    }
}
