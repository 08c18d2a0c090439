//! Pascal VOC segmentation masks (palette PNG, 255 = ignore).
