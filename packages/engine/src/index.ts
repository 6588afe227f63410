export {
  type AtomicWriteData,
  AtomicWriteError,
  type AtomicWriteOptions,
  writeFileAtomic,
} from "./atomic-write.js";
export { type GradOptions, grad, RECOMPUTE_OF_ATTR } from "./autodiff.js";
export { DTYPE_BYTES, type DType, numel, SAFETENSORS_DTYPES } from "./dtype.js";
export { type ElfDependencies, ElfError, readElfDependencies, sonameMajor } from "./elf-needed.js";
export { EditR1Error } from "./errors.js";
export {
  type Attrs,
  type AttrValue,
  type ExternalData,
  Graph,
  GraphError,
  type InitializerData,
  type Node,
  type Shape,
  Tensor,
  type TensorSource,
} from "./graph.js";
export { erfValue, evaluate, type FeedValue, InterpretError } from "./interpret.js";
export {
  castKernel,
  EXECUTION_PROVIDERS,
  type ExecutionProvider,
  hasKernel,
  KERNEL_TABLE,
  type KernelFloat,
  kernelDtype,
  type LoweredNode,
  summarizeUncovered,
  type UncoveredNode,
  uncoveredNodes,
} from "./kernels.js";
export {
  type Float32Fallback,
  IR_VERSION,
  type LoweredModel,
  type LowerOptions,
  lower,
  OPSET,
  type ValueSpec,
} from "./lower.js";
export { measurePeakRss } from "./measure-rss.js";
export { type MemoryPlan, planMemory } from "./memory-plan.js";
export * as nn from "./nn.js";
export * as ops from "./ops.js";
export {
  CUDA_INSTALL_COMMAND,
  type CudaProviderLibrary,
  type CudaRequirements,
  cudaProviderLibrary,
  cudaRequirements,
  type NvidiaGpu,
  type NvidiaSmiReport,
  nvidiaSmi,
  type OnnxruntimeInstall,
  onnxruntimeInstall,
  type ProviderProbe,
  probeProvider,
  WEBGPU_INSTALL_HINT,
} from "./providers.js";
export {
  type CompileOptions,
  CudaUnavailableError,
  closeDefaultRuntime,
  compile,
  DEVICES,
  type Device,
  type DeviceValueSpec,
  DeviceValues,
  defaultRuntime,
  FeedError,
  type RunOptions,
  Runtime,
  RuntimeError,
  Session,
  type SessionOptions,
  type TensorData,
  WebGpuUnavailableError,
} from "./runtime.js";
export { openSafetensors, SafetensorsCheckpoint } from "./safetensors-checkpoint.js";
export {
  bfloat16BitsToFloat32,
  bfloat16ToFloat32,
  float16BitsToFloat32,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToBfloat16Bits,
  float32ToFloat16,
  float32ToFloat16Bits,
} from "./safetensors-convert.js";
export { SafetensorsError, type SafetensorsErrorCode } from "./safetensors-error.js";
export { type OpenSafetensorsOptions, SafetensorsFile } from "./safetensors-file.js";
export {
  type ExternalTensorRef,
  MAX_SAFETENSORS_HEADER_BYTES,
  type ParseHeaderContext,
  parseSafetensorsHeader,
  type SafetensorsHeader,
  type SafetensorsTensorInfo,
} from "./safetensors-header.js";
export { readTensorBytes, readTensorData, readTensorFloat32, type TensorArray } from "./safetensors-read.js";
export {
  encodeSafetensors,
  encodeSafetensorsParts,
  type WritableTensor,
  type WritableTensors,
  type WriteSafetensorsOptions,
  writeSafetensors,
} from "./safetensors-write.js";
export { SessionCache, type SessionCacheOptions } from "./session-cache.js";
export { registerVjp, type VjpArgs, type VjpRule } from "./vjp.js";
