module.exports = require("./").https;
