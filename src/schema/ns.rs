//! The namespaces a WSDL reader and a SOAP writer need, in one place.

/// WSDL 1.1 definitions.
pub const WSDL: &str = "http://schemas.xmlsoap.org/wsdl/";
/// XML Schema.
pub const XSD: &str = "http://www.w3.org/2001/XMLSchema";
/// WSDL's SOAP 1.1 binding.
pub(crate) const SOAP11: &str = "http://schemas.xmlsoap.org/wsdl/soap/";
/// WSDL's SOAP 1.2 binding.
pub(crate) const SOAP12: &str = "http://schemas.xmlsoap.org/wsdl/soap12/";
/// SOAP 1.1 encoding: its simple types and `Array` are known without loading its schema.
pub(crate) const SOAP_ENC: &str = "http://schemas.xmlsoap.org/soap/encoding/";
