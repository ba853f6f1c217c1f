//! TODO(target helper)
