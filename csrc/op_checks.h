// The argument checks of each op, called by its CPU and its CUDA kernel alike.
#pragma once
#include <ATen/ATen.h>

#include "checks.h"

namespace wsis {

// Returns whether the input is batched ([B,N,4] x [B,M,4]).
inline bool check_box_iou_args(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  TORCH_CHECK(boxes1.dim() == boxes2.dim() && (boxes1.dim() == 2 || boxes1.dim() == 3),
              "box_iou: boxes1 and boxes2 must both be [N,4] or both [B,N,4], got ", boxes1.sizes(), " and ",
              boxes2.sizes());
  TORCH_CHECK(boxes1.size(-1) == 4 && boxes2.size(-1) == 4, "box_iou: the last dim must be 4");
  TORCH_CHECK(boxes1.dim() == 2 || boxes1.size(0) == boxes2.size(0), "box_iou: batch sizes differ: ",
              boxes1.size(0), " and ", boxes2.size(0));
  check_same_dtype(boxes1, "boxes1", boxes2, "boxes2");
  check_same_device(boxes1, "boxes1", boxes2, "boxes2");
  return boxes1.dim() == 3;
}

inline void check_nms_args(const at::Tensor& boxes, const at::Tensor& scores) {
  check_boxes(boxes, "boxes");
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0), "scores must have shape [", boxes.size(0),
              "], got ", scores.sizes());
  check_same_dtype(boxes, "boxes", scores, "scores");
  check_same_device(boxes, "boxes", scores, "scores");
}

inline void check_batched_nms_args(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs) {
  check_nms_args(boxes, scores);
  TORCH_CHECK(idxs.dim() == 1 && idxs.size(0) == boxes.size(0), "idxs must have shape [", boxes.size(0), "], got ",
              idxs.sizes());
  TORCH_CHECK(!at::isFloatingType(idxs.scalar_type()), "idxs must be an integer tensor, got ", idxs.scalar_type());
  check_same_device(boxes, "boxes", idxs, "idxs");
}

// Returns whether boxes are per class ([R,C,4]).
inline bool check_multiclass_nms_args(const at::Tensor& boxes, const at::Tensor& scores) {
  TORCH_CHECK(scores.dim() == 2, "scores must have shape [R, C], got ", scores.sizes());
  const int64_t R = scores.size(0), C = scores.size(1);
  const bool per_class = boxes.dim() == 3;
  TORCH_CHECK((boxes.dim() == 2 && boxes.size(0) == R && boxes.size(1) == 4) ||
                  (per_class && boxes.size(0) == R && boxes.size(1) == C && boxes.size(2) == 4),
              "boxes must have shape [", R, ", 4] or [", R, ", ", C, ", 4], got ", boxes.sizes());
  check_same_dtype(boxes, "boxes", scores, "scores");
  check_same_device(boxes, "boxes", scores, "scores");
  return per_class;
}

inline void check_roi_pool_args(const at::Tensor& input, const at::Tensor& rois, int64_t pooled_height,
                                int64_t pooled_width) {
  TORCH_CHECK(input.dim() == 4, "input must have shape [B, C, H, W], got ", input.sizes());
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, "rois must have shape [K, 5], got ", rois.sizes());
  TORCH_CHECK(pooled_height > 0 && pooled_width > 0, "output_size must be positive");
  check_same_dtype(input, "input", rois, "rois");
  check_same_device(input, "input", rois, "rois");
  check_roi_batch_indices(rois, input.size(0));
}

inline void check_roi_pool_backward_args(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                                         int64_t batch_size, int64_t channels) {
  TORCH_CHECK(grad.dim() == 4 && grad.sizes() == argmax.sizes(), "grad and argmax must have the same shape");
  TORCH_CHECK(argmax.scalar_type() == at::kInt, "argmax must be int32");
  TORCH_CHECK(grad.size(0) == rois.size(0) && grad.size(1) == channels, "grad does not match rois/channels");
  check_roi_batch_indices(rois, batch_size);
}

inline void check_oicr_assign_args(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& image_labels) {
  check_boxes(boxes, "boxes");
  TORCH_CHECK(scores.dim() == 2 && scores.size(0) == boxes.size(0), "scores must have shape [", boxes.size(0),
              ", C], got ", scores.sizes());
  TORCH_CHECK(image_labels.dim() == 1 && image_labels.size(0) == scores.size(1), "image_labels must have shape [",
              scores.size(1), "], got ", image_labels.sizes());
  check_same_dtype(boxes, "boxes", scores, "scores");
  check_same_device(boxes, "boxes", scores, "scores");
  check_same_device(boxes, "boxes", image_labels, "image_labels");
}

inline void check_weighted_gap_args(const at::Tensor& x, double sigma) {
  TORCH_CHECK(x.dim() == 4, "x must have shape [R, K, T, T], got ", x.sizes());
  TORCH_CHECK(sigma > 0, "sigma must be positive, got ", sigma);
  TORCH_CHECK(x.size(0) * x.size(1) == 0 || x.size(2) * x.size(3) > 0, "x must have a non-empty T x T grid, got ",
              x.sizes());
}

inline void check_cam_pseudo_masks_args(const at::Tensor& cams) {
  TORCH_CHECK(cams.dim() == 5, "cams must have shape [L, R, K, T, T], got ", cams.sizes());
  TORCH_CHECK(cams.size(0) > 0, "cams must hold at least one level");
}

}  // namespace wsis
