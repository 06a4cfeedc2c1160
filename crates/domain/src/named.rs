//! Enums whose variants are named on the wire and in databases.
//!
//! A stage, a move, a command, a guard or a cause is stored by its name and
//! sent by it, so each variant's name is written once, in `named_enum!`,
//! and everything that reads or writes one — `as_str`, `Display`, `FromStr`,
//! serde — takes it from there. Those names must never change.

use std::fmt;

/// A name that is none of an enum's variants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownName {
    /// What was expected, e.g. "stage".
    pub kind: &'static str,
    pub name: String,
    /// Every name there is, in order.
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?} (expected one of {})",
            self.kind,
            self.name,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}

/// Defines an enum with one name per variant (`Variant = "NAME"`) and
/// derives from those names `as_str`, `Display` and the serde name of each
/// variant (the enum must derive `Serialize` and `Deserialize`). An enum
/// without data, written `enum Stage as "stage"`, also gets `ALL` (every
/// variant, in order) and a `FromStr` that names the kind when it fails.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident as $kind:literal {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident = $text:literal
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $(
                $(#[$variant_meta])*
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// Every variant, in order.
            pub const ALL: [Self; [$($text),+].len()] = [$(Self::$variant),+];

            /// The name it is stored and sent by.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::named::UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| $crate::named::UnknownName {
                        kind: $kind,
                        name: s.to_owned(),
                        expected: &[$($text),+],
                    })
            }
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident $({ $($(#[$field_meta:meta])* $field:ident: $field_ty:ty),* $(,)? })? = $text:literal
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $(
                $(#[$variant_meta])*
                #[serde(rename = $text)]
                $variant $({ $($(#[$field_meta])* $field: $field_ty),* })?,
            )+
        }

        impl $name {
            /// The name of its kind, as stored and sent.
            pub const fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$variant { .. } => $text,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use named_enum;
