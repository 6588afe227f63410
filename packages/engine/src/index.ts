export { DTYPE_BYTES, type DType, numel, SAFETENSORS_DTYPES } from "./dtype.js";
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
export * as ops from "./ops.js";
