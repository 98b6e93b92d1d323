//! IOTLB (being written).
