//! Pascal VOC detection XML and YOLO txt annotation readers.
