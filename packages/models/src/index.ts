export { type FluxTransformerConfig, parseFluxTransformerConfig } from "./flux-config.js";
