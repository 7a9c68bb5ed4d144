//! Closed enums with wire names, declared once so `as_str` and `parse` can never
//! drift apart.
//!
//! Two record encodings exist, chosen per enum and never changed afterwards,
//! because bincode records carry no names:
//! - `wire_enum!(Name { .. })` derives serde, so a record stores the variant's
//!   index: variants may only ever be appended (the order enums).
//! - `wire_enum!(text Name { .. })` stores the wire name itself: variants may be
//!   added or reordered freely, and a record stays readable by eye in a hex dump
//!   (droplet status, provisioning error codes). Decoding an unknown name is an
//!   error, never a silent default.

/// See the module documentation for the two forms.
macro_rules! wire_enum {
    ($(#[$meta:meta])* text $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $crate::domain::wire::wire_enum!(@common [] $(#[$meta])* $name { $($variant => $text),+ });

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as ::serde::Deserialize>::deserialize(deserializer)?;
                $name::parse(&text).ok_or_else(|| {
                    <D::Error as ::serde::de::Error>::custom(format!(
                        concat!("unknown ", stringify!($name), " {:?}"),
                        text
                    ))
                })
            }
        }
    };
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $crate::domain::wire::wire_enum!(
            @common [::serde::Serialize, ::serde::Deserialize] $(#[$meta])* $name { $($variant => $text),+ }
        );
    };
    (@common [$($derive:path),*] $(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord $(, $derive)*)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use wire_enum;
