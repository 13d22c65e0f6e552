//! Images of EBS snapshots: what RegisterImage accepts, and the volumes RunInstances makes
//! from an image. AWS's rules, from the EC2 API reference (RegisterImage, RunInstances,
//! DeregisterImage, DeleteSnapshot).

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::state::Image;
use bulwark_cloud::ImageDevice;

/// Architectures RegisterImage takes.
const ARCHITECTURES: &[&str] = &["i386", "x86_64", "arm64", "x86_64_mac"];
/// Boot modes RegisterImage takes.
const BOOT_MODES: &[&str] = &["legacy-bios", "uefi", "uefi-preferred"];

pub(super) fn image_arn(region: &Region, id: &str) -> String {
    format!("arn:aws:ec2:{region}::image/{id}")
}

pub(super) fn image_info(owner: &AccountId, region: &Region, id: &ImageId, i: &Image) -> ImageInfo {
    ImageInfo {
        id: id.clone(),
        owner: owner.clone(),
        region: region.clone(),
        state: image_state(i),
        image: i.spec.clone(),
    }
}

fn image_state(i: &Image) -> String {
    if crate::clock::now() < i.ready_at {
        "pending".into()
    } else {
        "available".into()
    }
}

pub(super) fn not_found(action: Action, id: &ImageId) -> CloudError {
    CloudError::not_found(
        action,
        "InvalidAMIID.NotFound",
        format!("The image id '[{id}]' does not exist"),
    )
}

/// The caller's image `id`.
pub(super) fn own_image<'w>(
    world: &'w World,
    caller: &Caller,
    region: &Region,
    id: &ImageId,
) -> Result<&'w Image> {
    region_of(world, caller.account(), region)
        .and_then(|r| r.images.get(id))
        .ok_or_else(|| not_found(caller.action, id))
}

/// Checks a RegisterImage call as EC2 does, before anything is made: its name, architecture,
/// boot mode and devices, and every snapshot (the caller's own, completed, no larger than its
/// device's volume).
pub(super) fn check_register(
    world: &World,
    caller: &Caller,
    region: &Region,
    image: &RegisterImage,
) -> Result<()> {
    let action = caller.action;
    let invalid = |code: &str, message: String| Err(CloudError::invalid(action, code, message));
    let name_ok = (3..=128).contains(&image.name.len())
        && image
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(c));
    if !name_ok {
        return invalid(
            "InvalidAMIName.Malformed",
            format!(
                "AMI names must be between 3 and 128 characters long, and may contain letters, numbers, \
                 '(', ')', '.', '-', '/' and '_': {:?}",
                image.name
            ),
        );
    }
    let taken = region_of(world, caller.account(), region)
        .is_some_and(|r| r.images.values().any(|i| i.spec.name == image.name));
    if taken {
        return invalid(
            "InvalidAMIName.Duplicate",
            format!("AMI name {} is already in use by an AMI owned by you", image.name),
        );
    }
    if !ARCHITECTURES.contains(&image.architecture.as_str()) {
        return invalid(
            "InvalidParameterValue",
            format!(
                "Value ({}) for parameter architecture is invalid",
                image.architecture
            ),
        );
    }
    if let Some(mode) = image.boot_mode.as_deref().filter(|m| !BOOT_MODES.contains(m)) {
        return invalid(
            "InvalidParameterValue",
            format!("Value ({mode}) for parameter bootMode is invalid"),
        );
    }
    if !image.devices.iter().any(|d| d.device == image.root_device) {
        return invalid(
            "InvalidBlockDeviceMapping",
            format!(
                "The root device name {} has no block device mapping",
                image.root_device
            ),
        );
    }
    for (i, d) in image.devices.iter().enumerate() {
        if image.devices[..i].iter().any(|e| e.device == d.device) {
            return invalid(
                "InvalidBlockDeviceMapping",
                format!("The device {} is mapped twice", d.device),
            );
        }
        let (owner, s) = visible_snapshot(world, caller, region, &d.snapshot)?;
        // Stricter than AWS may be: the embedded cloud registers images only of the caller's
        // own snapshots (a restore copies or snapshots first, so it never needs more).
        if &owner != caller.account() {
            return Err(CloudError::new(
                action,
                ErrorKind::NotPermitted,
                "AuthFailure",
                format!(
                    "snapshot {} belongs to account {owner}: register images of account {}'s own snapshots",
                    d.snapshot,
                    caller.account()
                ),
            ));
        }
        let state = crate::clock::snapshot_state(&s, crate::clock::now());
        if state != "completed" {
            return Err(CloudError::new(
                action,
                ErrorKind::NotPermitted,
                "IncorrectState",
                format!("Snapshot {} is in invalid state - {state}", d.snapshot),
            ));
        }
        let size = d.size_gib.unwrap_or(s.size_gib);
        if size < s.size_gib {
            return invalid(
                "InvalidBlockDeviceMapping",
                format!(
                    "Volume of size {size} GiB is smaller than snapshot '{}', expect size >= {} GiB",
                    d.snapshot, s.size_gib
                ),
            );
        }
        if let Some(p) = &d.performance {
            p.volume_type
                .performance(size, p.iops, p.throughput)
                .map_err(|r| CloudError::invalid(action, r.code, r.message))?;
        }
    }
    Ok(())
}

/// The architecture of an instance type: Graviton families carry a `g` after their
/// generation (`m7g`, `c6gn`, `t4g`), like `a1`; Macs are `x86_64_mac`; the rest `x86_64`.
pub(super) fn type_architecture(instance_type: &str) -> &'static str {
    let family = instance_type.split('.').next().unwrap_or("");
    if family == "a1" {
        return "arm64";
    }
    if family.starts_with("mac") {
        return if family == "mac1" {
            "x86_64_mac"
        } else {
            "arm64_mac"
        };
    }
    let suffix = family.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = suffix.trim_start_matches(|c: char| c.is_ascii_digit());
    if suffix.contains('g') {
        "arm64"
    } else {
        "x86_64"
    }
}

/// The image snapshot that blocks a DeleteSnapshot: an image of the caller's that uses it.
pub(super) fn image_using(
    world: &World,
    caller: &Caller,
    region: &Region,
    snapshot: &SnapshotId,
) -> Option<ImageId> {
    region_of(world, caller.account(), region)?
        .images
        .iter()
        .find(|(_, i)| i.spec.devices.iter().any(|d| &d.snapshot == snapshot))
        .map(|(id, _)| id.clone())
}

/// What a launch from an image makes.
pub(super) struct ImageLaunch {
    /// The image.
    pub image: Image,
    /// Each device, with the snapshot its volume is made from, in the image's order.
    pub volumes: Vec<(ImageDevice, Snapshot)>,
    /// Why the instance ends at boot, if it does: a key the caller may not use (AWS answers
    /// the launch, then the instance ends with `Client.InternalError`).
    pub fails: Option<String>,
}

/// The volumes a launch from `image` makes, checked: the image is the caller's, available,
/// of the instance type's architecture. `Err` refuses the call.
pub(super) fn launch_volumes(
    world: &World,
    caller: &Caller,
    region: &Region,
    id: &ImageId,
    instance_type: &str,
) -> Result<ImageLaunch> {
    let action = caller.action;
    caller.check(world, action, &image_arn(region, id.as_str()), &[], None)?;
    let image = own_image(world, caller, region, id)?.clone();
    if image_state(&image) != "available" {
        return Err(CloudError::new(
            action,
            ErrorKind::NotPermitted,
            "InvalidAMIID.Unavailable",
            format!("The image id '[{id}]' is not available yet"),
        ));
    }
    let arch = type_architecture(instance_type);
    if arch != image.spec.architecture {
        return Err(CloudError::invalid(
            action,
            "InvalidParameterValue",
            format!(
                "The architecture '{arch}' of the specified instance type does not match the architecture '{}' of the specified AMI.",
                image.spec.architecture
            ),
        ));
    }
    let mut volumes = Vec::new();
    let mut fails = None;
    for d in &image.spec.devices {
        let (_, s) = visible_snapshot(world, caller, region, &d.snapshot).map_err(|_| {
            CloudError::invalid(
                action,
                "InvalidBlockDeviceMapping",
                format!("snapshot {} of image {id} does not exist", d.snapshot),
            )
        })?;
        if let Some(k) = &s.key {
            if let Err(e) = ebs_may_use_arn(world, caller, k) {
                fails.get_or_insert(format!(
                    "Client.InternalError: Client error on launch ({})",
                    e.message
                ));
            }
        }
        volumes.push((d.clone(), s));
    }
    Ok(ImageLaunch {
        image,
        volumes,
        fails,
    })
}
