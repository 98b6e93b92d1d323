//! The policy matrix of docs/design.md §2, as data: one row per frame type.
//!
//! Nothing else in the crate decides where a type may be mapped; every check
//! reads [`POLICY`] through [`policy`].

use crate::types::FrameType;
use std::fmt;
use std::str::FromStr;

/// An access permission: read, write or both.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Perm(u8);

impl Perm {
    /// No access (used in policy rows for "no").
    pub const NONE: Perm = Perm(0);
    /// Read only.
    pub const R: Perm = Perm(1);
    /// Write only (DART mappings only).
    pub const W: Perm = Perm(2);
    /// Read and write.
    pub const RW: Perm = Perm(3);

    /// Builds a permission from its two bits.
    pub const fn new(read: bool, write: bool) -> Perm {
        Perm((read as u8) | ((write as u8) << 1))
    }
    /// Whether reading is allowed.
    pub const fn read(self) -> bool {
        self.0 & 1 != 0
    }
    /// Whether writing is allowed.
    pub const fn write(self) -> bool {
        self.0 & 2 != 0
    }
    /// Whether this permission allows nothing.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Whether every access `other` allows, `self` allows too.
    pub const fn contains(self, other: Perm) -> bool {
        self.0 & other.0 == other.0
    }
    /// The scenario-file spelling: `r`, `w`, `rw` or `none`.
    pub const fn name(self) -> &'static str {
        match self.0 {
            1 => "r",
            2 => "w",
            3 => "rw",
            _ => "none",
        }
    }
}

impl fmt::Debug for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A permission name that is not `r`, `w` or `rw`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission `{0}` (expected r, w or rw)")]
pub struct UnknownPerm(pub String);

impl FromStr for Perm {
    type Err = UnknownPerm;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "r" => Ok(Perm::R),
            "w" => Ok(Perm::W),
            "rw" => Ok(Perm::RW),
            _ => Err(UnknownPerm(s.to_owned())),
        }
    }
}

/// Who wants to reach a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// A CPU mapping in the kernel's address space.
    CpuKernel,
    /// A CPU mapping in a user process.
    CpuUser,
    /// A DART mapping (or a bypassed DART access).
    Dart,
    /// The kernel's static physical aperture (not a mapping).
    Aperture,
}

impl Access {
    /// A short name for messages: `cpu-kernel`, `cpu-user`, `dart`, `aperture`.
    pub const fn name(self) -> &'static str {
        match self {
            Access::CpuKernel => "cpu-kernel",
            Access::CpuUser => "cpu-user",
            Access::Dart => "dart",
            Access::Aperture => "aperture",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One row of the policy matrix: the widest permission each kind of access
/// may have to a frame of this type, and the mapping limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypePolicy {
    /// CPU kernel mappings.
    pub cpu_kernel: Perm,
    /// At most this many CPU kernel mappings (`u32::MAX`: only the counter width limits).
    pub cpu_kernel_limit: u32,
    /// CPU user mappings.
    pub cpu_user: Perm,
    /// DART mappings and bypassed DART accesses.
    pub dart: Perm,
    /// The static physical aperture.
    pub aperture: Perm,
}

impl TypePolicy {
    /// The widest permission `access` may have.
    pub const fn allowed(&self, access: Access) -> Perm {
        match access {
            Access::CpuKernel => self.cpu_kernel,
            Access::CpuUser => self.cpu_user,
            Access::Dart => self.dart,
            Access::Aperture => self.aperture,
        }
    }

    /// Whether `access` with `perm` is allowed (an empty `perm` never is).
    pub const fn allows(&self, access: Access, perm: Perm) -> bool {
        !perm.is_empty() && self.allowed(access).contains(perm)
    }
}

const NO: Perm = Perm::NONE;
const UNLIMITED: u32 = u32::MAX;

const fn row(cpu_kernel: Perm, cpu_kernel_limit: u32, cpu_user: Perm, dart: Perm, aperture: Perm) -> TypePolicy {
    TypePolicy { cpu_kernel, cpu_kernel_limit, cpu_user, dart, aperture }
}

/// The policy matrix of docs/design.md §2, indexed by `FrameType as usize`.
///
/// | type | CPU kernel | CPU user | DART | aperture |
/// |---|---|---|---|---|
/// | free | no | no | no | rw |
/// | kernel-restricted | rw, at most 1 | no | no | rw |
/// | kernel-shared | rw | rw | rw | rw |
/// | compressor | rw | no | rw | rw |
/// | user-data | rw | rw | rw | rw |
/// | read-only | r | no | no | r |
/// | page-table, dart-table, mmio, reserved | no | no | no | no |
pub const POLICY: [TypePolicy; 10] = [
    /* free              */ row(NO, UNLIMITED, NO, NO, Perm::RW),
    /* kernel-restricted */ row(Perm::RW, 1, NO, NO, Perm::RW),
    /* kernel-shared     */ row(Perm::RW, UNLIMITED, Perm::RW, Perm::RW, Perm::RW),
    /* compressor        */ row(Perm::RW, UNLIMITED, NO, Perm::RW, Perm::RW),
    /* user-data         */ row(Perm::RW, UNLIMITED, Perm::RW, Perm::RW, Perm::RW),
    /* read-only         */ row(Perm::R, UNLIMITED, NO, NO, Perm::R),
    /* page-table        */ row(NO, UNLIMITED, NO, NO, NO),
    /* dart-table        */ row(NO, UNLIMITED, NO, NO, NO),
    /* mmio              */ row(NO, UNLIMITED, NO, NO, NO),
    /* reserved          */ row(NO, UNLIMITED, NO, NO, NO),
];

/// The policy row of `ty`.
pub const fn policy(ty: FrameType) -> &'static TypePolicy {
    &POLICY[ty as usize]
}

/// The retypes between two non-free types that R1 allows (both directions).
/// `free → any non-free type` is always allowed; nothing retypes *to* `free`.
pub const NON_FREE_RETYPES: [(FrameType, FrameType); 2] =
    [(FrameType::KernelShared, FrameType::UserData), (FrameType::KernelShared, FrameType::Compressor)];

/// Whether R1 allows `from → to` (counts aside).
pub fn retype_allowed(from: FrameType, to: FrameType) -> bool {
    if to == FrameType::Free || from == to {
        return false;
    }
    from == FrameType::Free || NON_FREE_RETYPES.iter().any(|&(a, b)| (a, b) == (from, to) || (b, a) == (from, to))
}

/// Whether frames of `ty` may ever be reached by a device (DART column).
pub const fn device_reachable(ty: FrameType) -> bool {
    !policy(ty).dart.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perm_algebra() {
        assert!(Perm::RW.contains(Perm::R));
        assert!(Perm::RW.contains(Perm::W));
        assert!(!Perm::R.contains(Perm::W));
        assert!(!Perm::R.contains(Perm::RW));
        assert_eq!(Perm::new(true, false), Perm::R);
        assert_eq!(Perm::new(false, true), Perm::W);
        assert_eq!("rw".parse::<Perm>(), Ok(Perm::RW));
        assert_eq!("x".parse::<Perm>(), Err(UnknownPerm("x".into())));
        for t in FrameType::ALL {
            for a in [Access::CpuKernel, Access::CpuUser, Access::Dart, Access::Aperture] {
                assert!(!policy(t).allows(a, Perm::NONE), "{t} {a}");
            }
        }
    }

    #[test]
    fn only_the_spec_retypes_are_allowed() {
        let mut allowed = Vec::new();
        for from in FrameType::ALL {
            for to in FrameType::ALL {
                if retype_allowed(from, to) {
                    allowed.push((from, to));
                }
            }
        }
        let mut expected: Vec<_> = FrameType::ALL[1..].iter().map(|&t| (FrameType::Free, t)).collect();
        expected.extend([
            (FrameType::KernelShared, FrameType::Compressor),
            (FrameType::KernelShared, FrameType::UserData),
            (FrameType::Compressor, FrameType::KernelShared),
            (FrameType::UserData, FrameType::KernelShared),
        ]);
        allowed.sort();
        expected.sort();
        assert_eq!(allowed, expected);
    }
}
