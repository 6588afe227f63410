export { DTYPE_BYTES, type DType, numel, SAFETENSORS_DTYPES } from "./dtype.js";
