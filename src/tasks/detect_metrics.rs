//! Detection metrics: Pascal VOC mAP@0.5 and COCO mAP@[.5:.95].
