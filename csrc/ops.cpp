// The schema of every wsis op, registered once. Backends add kernels with
// TORCH_LIBRARY_IMPL(wsis, CPU|CUDA, m) in csrc/cpu and csrc/cuda.
#include <Python.h>
#include <torch/library.h>

// `import wsis._C` loads this library; its static initialisers register the ops.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr, nullptr, nullptr, nullptr, nullptr};
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(wsis, m) {
  m.def("box_iou(Tensor boxes1, Tensor boxes2) -> Tensor");
  m.def("nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");
  m.def("batched_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold) -> Tensor");
  m.def(
      "multiclass_nms(Tensor boxes, Tensor scores, float iou_threshold, float score_threshold, "
      "int max_per_class) -> (Tensor, Tensor)");
  m.def(
      "roi_pool(Tensor input, Tensor rois, float spatial_scale, int pooled_height, "
      "int pooled_width) -> (Tensor, Tensor)");
  m.def(
      "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, int batch_size, int channels, "
      "int height, int width) -> Tensor");
  m.def(
      "oicr_assign(Tensor boxes, Tensor scores, Tensor image_labels, float fg_thresh, "
      "float bg_thresh) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("weighted_gap(Tensor x, float sigma) -> Tensor");
  m.def("_weighted_gap_backward(Tensor grad, float sigma, int height, int width) -> Tensor");
  m.def("cam_pseudo_masks(Tensor cams, float xi) -> (Tensor, Tensor)");
}
