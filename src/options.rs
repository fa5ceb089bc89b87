//! The one way an options struct is declared. [`options!`] writes, from one list of
//! `field: type = default`, the struct (`#[non_exhaustive]`, so adding an option is not
//! a breaking change), its `Default`, one chainable setter per field, and the defaults
//! table in the struct's docs. The table is `stringify!` of the very expression
//! `Default` evaluates, so the documented default cannot drift from the real one.
//!
//! Callers outside the crate build options as `JournalOptions::default().max_line_bytes(4 << 20)`
//! (struct-update syntax is closed to them by `#[non_exhaustive]`), or assign fields.

/// Declares an options struct; see the module docs.
macro_rules! options {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                pub $field:ident : $ty:ty = $default:expr,
            )*
        }
    ) => {
        $(#[$meta])*
        ///
        /// | option | default |
        /// |---|---|
        $(#[doc = concat!("| [`", stringify!($field), "`](#structfield.", stringify!($field), ") | `", stringify!($default), "` |")])*
        ///
        #[doc = concat!("Start from `", stringify!($name), "::default()` and chain the setters (one per field, same name).")]
        #[derive(Debug, Clone)]
        #[non_exhaustive]
        pub struct $name {
            $($(#[doc = $doc])* pub $field: $ty,)*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $($field: $default,)* }
            }
        }

        impl $name {
            $(
                #[doc = concat!("Sets [`", stringify!($field), "`](#structfield.", stringify!($field), ").")]
                #[must_use]
                pub fn $field(mut self, value: $ty) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}

pub(crate) use options;
