// roi_pool on CUDA: one thread per output element; the backward scatters with atomics.
#include <torch/library.h>

#include <cfloat>

#include "../box_math.h"
#include "../op_checks.h"
#include "cuda_utils.cuh"

namespace wsis {
namespace {

template <typename T>
__global__ void roi_pool_forward_kernel(int64_t total, const T* __restrict__ input, const T* __restrict__ rois,
                                        T spatial_scale, int C, int H, int W, int PH, int PW, T* __restrict__ out,
                                        int* __restrict__ argmax) {
  WSIS_CUDA_LOOP(idx, total) {
    const int pw = idx % PW, ph = (idx / PW) % PH, c = (idx / PW / PH) % C;
    const int64_t k = idx / PW / PH / C;
    const T* roi = rois + k * 5;
    const RoiBin bin = RoiGeometry<T>(roi, spatial_scale, PH, PW).bin(ph, pw, H, W);
    const T* plane = input + (static_cast<int64_t>(roi[0]) * C + c) * H * W;
    T best = bin.empty() ? T(0) : T(-FLT_MAX);
    int where = -1;
    for (int h = bin.hstart; h < bin.hend; ++h) {
      for (int w = bin.wstart; w < bin.wend; ++w) {
        const T v = plane[h * W + w];
        if (v > best) best = v, where = h * W + w;  // first maximum wins, as torchvision
      }
    }
    out[idx] = best;
    argmax[idx] = where;
  }
}

template <typename T>
__global__ void roi_pool_backward_kernel(int64_t total, const T* __restrict__ grad, const int* __restrict__ argmax,
                                         const T* __restrict__ rois, int C, int64_t P, int64_t HW,
                                         T* __restrict__ grad_input) {
  WSIS_CUDA_LOOP(idx, total) {
    const int where = argmax[idx];
    if (where < 0) continue;
    const int64_t k = idx / P / C, c = (idx / P) % C;
    atomicAdd(grad_input + (static_cast<int64_t>(rois[k * 5]) * C + c) * HW + where, grad[idx]);
  }
}

std::tuple<at::Tensor, at::Tensor> roi_pool_cuda(const at::Tensor& input_, const at::Tensor& rois_,
                                                 double spatial_scale, int64_t pooled_height, int64_t pooled_width) {
  at::cuda::CUDAGuard guard(input_.device());
  check_roi_pool_args(input_, rois_, pooled_height, pooled_width);
  const int64_t K = rois_.size(0), C = input_.size(1), H = input_.size(2), W = input_.size(3);
  auto out = at::empty({K, C, pooled_height, pooled_width}, input_.options());
  auto argmax = at::empty({K, C, pooled_height, pooled_width}, input_.options().dtype(at::kInt));
  if (out.numel() == 0) return {out, argmax};
  auto input = input_.contiguous();
  auto rois = rois_.contiguous();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_pool_cuda", [&] {
    roi_pool_forward_kernel<scalar_t><<<blocks_for(out.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        out.numel(), input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(), static_cast<scalar_t>(spatial_scale), C,
        H, W, pooled_height, pooled_width, out.data_ptr<scalar_t>(), argmax.data_ptr<int>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out, argmax};
}

at::Tensor roi_pool_backward_cuda(const at::Tensor& grad_, const at::Tensor& rois_, const at::Tensor& argmax_,
                                  int64_t batch_size, int64_t channels, int64_t height, int64_t width) {
  at::cuda::CUDAGuard guard(grad_.device());
  check_roi_pool_backward_args(grad_, rois_, argmax_, batch_size, channels);
  auto grad_input = at::zeros({batch_size, channels, height, width}, grad_.options());
  if (grad_.numel() == 0) return grad_input;
  auto grad = grad_.contiguous();
  auto argmax = argmax_.contiguous();
  auto rois = rois_.contiguous();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "roi_pool_backward_cuda", [&] {
    roi_pool_backward_kernel<scalar_t><<<blocks_for(grad.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        grad.numel(), grad.data_ptr<scalar_t>(), argmax.data_ptr<int>(), rois.data_ptr<scalar_t>(), channels,
        grad.size(2) * grad.size(3), height * width, grad_input.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(wsis, CUDA, m) {
  m.impl("roi_pool", &roi_pool_cuda);
  m.impl("_roi_pool_backward", &roi_pool_backward_cuda);
}

}  // namespace wsis
