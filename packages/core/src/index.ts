export { emaDecay, oldPolicyDecay } from "./decay.js";
