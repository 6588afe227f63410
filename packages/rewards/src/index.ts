export { expectedScore, type TokenLogprob } from "./score.js";
