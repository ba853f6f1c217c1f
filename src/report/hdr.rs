//! TODO(report helper)
