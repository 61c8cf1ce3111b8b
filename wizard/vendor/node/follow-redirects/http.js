module.exports = require("./").http;
