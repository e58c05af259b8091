// Box arithmetic shared by the CPU and CUDA kernels, written once so both backends
// round exactly alike.
#pragma once

#include <cmath>
#include <limits>

#ifdef __CUDACC__
#define WSIS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define WSIS_HOST_DEVICE inline
#endif

namespace wsis {

template <typename T>
WSIS_HOST_DEVICE T min_(T a, T b) { return b < a ? b : a; }
template <typename T>
WSIS_HOST_DEVICE T max_(T a, T b) { return a < b ? b : a; }

// v - v is 0 for finite v and NaN for NaN and +-inf; one spelling for host and device code.
template <typename T>
WSIS_HOST_DEVICE bool is_finite(T v) { return v - v == T(0); }

// IoU exactly as torchvision computes it: area without +1, (a + b) - inter as union,
// so two zero-area boxes give 0/0 = NaN (which never passes a threshold test).
template <typename T>
WSIS_HOST_DEVICE T box_iou_one(T ax1, T ay1, T ax2, T ay2, T aarea, T bx1, T by1, T bx2, T by2, T barea) {
  T w = max_(min_(ax2, bx2) - max_(ax1, bx1), T(0));
  T h = max_(min_(ay2, by2) - max_(ay1, by1), T(0));
  T inter = w * h;
  return inter / (aarea + barea - inter);
}

// The pooling window of one output bin of torchvision's roi_pool, clipped to the map.
struct RoiBin {
  int hstart, hend, wstart, wend;
  WSIS_HOST_DEVICE bool empty() const { return hend <= hstart || wend <= wstart; }
};

template <typename T>
struct RoiGeometry {
  int start_w, start_h;
  T bin_w, bin_h;
  bool finite;  // a roi with a NaN or infinite coordinate pools nothing: every bin is empty

  WSIS_HOST_DEVICE RoiGeometry(const T* roi, T spatial_scale, int pooled_height, int pooled_width) {
    finite = is_finite(roi[1] * spatial_scale) && is_finite(roi[2] * spatial_scale) &&
             is_finite(roi[3] * spatial_scale) && is_finite(roi[4] * spatial_scale);
    start_w = grid(roi[1], spatial_scale);
    start_h = grid(roi[2], spatial_scale);
    int end_w = grid(roi[3], spatial_scale);
    int end_h = grid(roi[4], spatial_scale);
    // Malformed rois become 1x1.
    int roi_w = max_(end_w - start_w + 1, 1);
    int roi_h = max_(end_h - start_h + 1, 1);
    bin_h = static_cast<T>(roi_h) / static_cast<T>(pooled_height);
    bin_w = static_cast<T>(roi_w) / static_cast<T>(pooled_width);
  }

  // round() of T, as torchvision (half away from zero). Clamped to +-2^29 first, far outside any
  // map, so that the int arithmetic cannot overflow; a non-finite value goes to 0 (see `finite`).
  WSIS_HOST_DEVICE int grid(T v, T spatial_scale) const {
    const T r = ::round(v * spatial_scale), limit = T(1 << 29);
    return finite ? static_cast<int>(r < -limit ? -limit : (r > limit ? limit : r)) : 0;
  }

  WSIS_HOST_DEVICE RoiBin bin(int ph, int pw, int height, int width) const {
    RoiBin b;
    if (!finite) {
      b.hstart = b.hend = b.wstart = b.wend = 0;
      return b;
    }
    b.hstart = min_(max_(static_cast<int>(::floor(static_cast<T>(ph) * bin_h)) + start_h, 0), height);
    b.hend = min_(max_(static_cast<int>(::ceil(static_cast<T>(ph + 1) * bin_h)) + start_h, 0), height);
    b.wstart = min_(max_(static_cast<int>(::floor(static_cast<T>(pw) * bin_w)) + start_w, 0), width);
    b.wend = min_(max_(static_cast<int>(::ceil(static_cast<T>(pw + 1) * bin_w)) + start_w, 0), width);
    return b;
  }
};

// weighted_gap's weights: a Gaussian centred on the H x W grid, normalised to sum 1. Separable,
// so the normaliser is a product of two 1-D sums. Computed in double for every dtype.
WSIS_HOST_DEVICE double gap_norm(int height, int width, double sigma) {
  const double ci = (height - 1) / 2.0, cj = (width - 1) / 2.0, two_s2 = 2.0 * sigma * sigma;
  double si = 0, sj = 0;
  for (int k = 0; k < height; ++k) si += ::exp(-(k - ci) * (k - ci) / two_s2);
  for (int k = 0; k < width; ++k) sj += ::exp(-(k - cj) * (k - cj) / two_s2);
  return si * sj;
}

WSIS_HOST_DEVICE double gap_weight(int i, int j, int height, int width, double sigma, double norm) {
  const double di = i - (height - 1) / 2.0, dj = j - (width - 1) / 2.0, two_s2 = 2.0 * sigma * sigma;
  return ::exp(-di * di / two_s2) * ::exp(-dj * dj / two_s2) / norm;
}

// The largest T not above `thr`: for every T value v (NaN included), `v > threshold_in<T>(thr)`
// equals torchvision's `double(v) > thr`, so NMS can compare in T (and vectorise) bit-exactly.
template <typename T>
inline T threshold_in(double thr) {
  T t = static_cast<T>(thr);
  return static_cast<double>(t) > thr ? std::nextafter(t, -std::numeric_limits<T>::infinity()) : t;
}

}  // namespace wsis
