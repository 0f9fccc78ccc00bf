//! Bulk byte streams through a pipe at page-moving speed (work in progress).
