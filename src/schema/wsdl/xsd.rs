//! The XSD half of the reader: elements, simple and complex types, facets, attributes,
//! derivation and substitution, as the WSDL's operations reference them. Methods of the
//! same [`Reader`] as `wsdl.rs`, which reads the WSDL definitions into operations.

use std::sync::Arc;

use super::super::dom::Node;
use super::super::ns::{SOAP_ENC, XSD};
use super::super::xsd_regex;
use super::super::{Attribute, Builtin, ComplexType, Compositor, Element, Facets, SimpleType, TypeId, TypeRef};
use super::{MAX_PARTICLES, Reader, WsdlError, invalid};

impl<'a> Reader<'a> {
    pub(super) fn element(&mut self, node: &'a Node, schema: usize, global: bool) -> Result<Element, WsdlError> {
        if let Some(r) = node.attr("ref") {
            let key = node.resolve_qname(r);
            let &(s, target) =
                self.elements.get(&key).ok_or_else(|| invalid(node, format!("ref {r:?} names no global element")))?;
            let mut el = self.element(target, s, true)?;
            el.min_occurs = occurs(node.attr("minOccurs"), 1).unwrap_or(1);
            el.max_occurs = occurs(node.attr("maxOccurs"), 1);
            return Ok(el);
        }
        let name = node.attr("name").ok_or_else(|| invalid(node, "element without name= or ref="))?.to_string();
        let info = &self.schemas[schema];
        let qualified = global || node.attr("form").map_or(info.qualified, |f| f == "qualified");
        let namespace = (qualified && !info.target_ns.is_empty()).then(|| Arc::from(info.target_ns.as_str()));
        let ty = if let Some(t) = node.attr("type") {
            self.type_ref(node, &node.resolve_qname(t))?
        } else if let Some(ct) = node.child(XSD, "complexType") {
            // A global element's inline type is shared by every reference to the element, so
            // an element that contains itself (a tree) ends instead of recursing.
            let owner = global.then(|| (info.target_ns.clone(), name.clone()));
            match owner.as_ref().and_then(|o| self.element_type_ids.get(o)) {
                Some(&id) => TypeRef::Complex(id),
                None => TypeRef::Complex(self.complex_type_of(ct, schema, None, owner)?),
            }
        } else if let Some(st) = node.child(XSD, "simpleType") {
            TypeRef::Simple(Arc::new(self.simple_type(st, None)?))
        } else {
            TypeRef::Simple(Arc::new(SimpleType::builtin(Builtin::Any)))
        };
        Ok(Element {
            json_name: self.json_name(&name),
            name,
            namespace,
            ty,
            min_occurs: occurs(node.attr("minOccurs"), 1).unwrap_or(1),
            max_occurs: occurs(node.attr("maxOccurs"), 1),
            nillable: node.attr("nillable") == Some("true"),
            doc: documentation(node),
        })
    }

    pub(super) fn type_ref(&mut self, at: &Node, key: &(String, String)) -> Result<TypeRef, WsdlError> {
        if key.0 == SOAP_ENC && key.1 == "Array" {
            // An untyped SOAP-encoded array: items of any type.
            let item = array_item(TypeRef::Simple(Arc::new(SimpleType::builtin(Builtin::Any))));
            let id = self.set.types.len();
            self.set.types.push(ComplexType { array_item: Some(Box::new(item)), ..ComplexType::default() });
            return Ok(TypeRef::Complex(id));
        }
        if key.0 == XSD || key.0 == SOAP_ENC {
            return Ok(TypeRef::Simple(builtin_type(at, key)?));
        }
        if let Some(&(schema, node)) = self.complex.get(key) {
            if let Some(&id) = self.named_complex_ids.get(key) {
                return Ok(TypeRef::Complex(id));
            }
            return Ok(TypeRef::Complex(self.complex_type(node, schema, Some(key.clone()))?));
        }
        Ok(TypeRef::Simple(self.named_simple_type(at, key)?))
    }

    pub(super) fn named_simple_type(
        &mut self,
        at: &Node,
        key: &(String, String),
    ) -> Result<Arc<SimpleType>, WsdlError> {
        if key.0 == XSD || key.0 == SOAP_ENC {
            return builtin_type(at, key);
        }
        if let Some(st) = self.named_simple.get(key) {
            return Ok(st.clone());
        }
        let &(_, node) =
            self.simple.get(key).ok_or_else(|| invalid(at, format!("type {{{}}}{} is not declared", key.0, key.1)))?;
        self.guard(at)?;
        let st = Arc::new(self.simple_type(node, Some(format!("{{{}}}{}", key.0, key.1)))?);
        self.depth -= 1;
        self.named_simple.insert(key.clone(), st.clone());
        Ok(st)
    }

    /// Bounds nesting of simple-type derivations, so a cyclic restriction cannot loop.
    pub(super) fn guard(&mut self, at: &Node) -> Result<(), WsdlError> {
        self.depth += 1;
        if self.depth > 64 {
            return Err(invalid(at, "type derivation nests more than 64 levels (a cycle?)"));
        }
        Ok(())
    }

    pub(super) fn simple_type(&mut self, node: &'a Node, name: Option<String>) -> Result<SimpleType, WsdlError> {
        if let Some(list) = node.child(XSD, "list") {
            // A whitespace-separated list: a JSON array of the item type's values.
            let item = match (list.attr("itemType"), list.child(XSD, "simpleType")) {
                (Some(t), _) => (*self.named_simple_type(list, &list.resolve_qname(t))?).clone(),
                (None, Some(inner)) => self.simple_type(inner, None)?,
                (None, None) => SimpleType::builtin(Builtin::String),
            };
            return Ok(SimpleType { name, list: true, ..item });
        }
        if let Some(union) = node.child(XSD, "union") {
            // Members from memberTypes= and inline simpleTypes; a value takes the first that fits.
            let mut members = Vec::new();
            for t in union.attr("memberTypes").unwrap_or("").split_whitespace() {
                members.push(self.named_simple_type(union, &union.resolve_qname(t))?);
            }
            for inner in union.children_named(XSD, "simpleType") {
                members.push(Arc::new(self.simple_type(inner, None)?));
            }
            return Ok(SimpleType { name, union: members, ..SimpleType::builtin(Builtin::String) });
        }
        let Some(restriction) = node.child(XSD, "restriction") else {
            return Ok(SimpleType { name, ..SimpleType::builtin(Builtin::String) });
        };
        let mut st = match restriction.attr("base") {
            Some(base) => (*self.named_simple_type(restriction, &restriction.resolve_qname(base))?).clone(),
            None => match restriction.child(XSD, "simpleType") {
                Some(inner) => self.simple_type(inner, None)?,
                None => SimpleType::builtin(Builtin::String),
            },
        };
        st.name = name;
        apply_facets(&mut st.facets, restriction);
        Ok(st)
    }

    pub(super) fn complex_type(
        &mut self,
        node: &'a Node,
        schema: usize,
        key: Option<(String, String)>,
    ) -> Result<TypeId, WsdlError> {
        self.complex_type_of(node, schema, key, None)
    }

    /// A complex type, registered under its name (named types) or under the global element
    /// that declares it inline, so recursive references find it instead of looping.
    fn complex_type_of(
        &mut self,
        node: &'a Node,
        schema: usize,
        key: Option<(String, String)>,
        element: Option<(String, String)>,
    ) -> Result<TypeId, WsdlError> {
        let id = self.set.types.len();
        self.set.types.push(ComplexType {
            name: key.as_ref().map(|(ns, n)| format!("{{{ns}}}{n}")),
            open: node.attr("mixed") == Some("true"),
            is_abstract: node.attr("abstract") == Some("true"),
            ..ComplexType::default()
        });
        if let Some(key) = &key {
            self.named_complex_ids.insert(key.clone(), id);
        }
        if let Some(element) = &element {
            self.element_type_ids.insert(element.clone(), id);
        }
        let mut ct = self.set.types[id].clone();
        if let Err(e) = self.content(node, schema, &mut ct) {
            // Unregister the half-built type: the next operation that uses it fails the same
            // way instead of silently getting an empty type.
            if let Some(key) = &key {
                self.named_complex_ids.remove(key);
            }
            if let Some(element) = &element {
                self.element_type_ids.remove(element);
            }
            return Err(e);
        }
        self.set.types[id] = ct;
        Ok(id)
    }

    /// Links every compiled named type to the named types derived from it, transitively,
    /// compiling those not reached yet (until nothing new is compiled). Done after the
    /// operations, so the result does not depend on which type was reached first. A derived
    /// type that cannot be modelled is left out: it only narrows the choice.
    pub(super) fn link_subtypes(&mut self) {
        let mut rounds = 0;
        loop {
            rounds += 1;
            let mut bases: Vec<((String, String), TypeId)> =
                self.named_complex_ids.iter().map(|(k, v)| (k.clone(), *v)).collect();
            bases.sort();
            let mut compiled = false;
            for (base, id) in bases {
                let mut subs = Vec::new();
                for key in self.descendants(&base) {
                    let sub = match self.named_complex_ids.get(&key) {
                        Some(&sub) => Some(sub),
                        None => match self.complex.get(&key) {
                            Some(&(schema, node)) => {
                                self.depth = 0;
                                compiled = true;
                                self.complex_type(node, schema, Some(key.clone())).ok()
                            }
                            None => None,
                        },
                    };
                    subs.extend(sub.filter(|s| *s != id));
                }
                self.set.types[id].subtypes = subs;
            }
            if !compiled || rounds > 16 {
                break;
            }
        }
    }

    /// Named types derived from `base`, directly or not, in declaration order (bounded).
    fn descendants(&self, base: &(String, String)) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut i = 0;
        let mut frontier = vec![base.clone()];
        while i < frontier.len() && out.len() < MAX_PARTICLES {
            for d in self.derived.get(&frontier[i]).into_iter().flatten() {
                if d != base && !out.contains(d) {
                    out.push(d.clone());
                    frontier.push(d.clone());
                }
            }
            i += 1;
        }
        out
    }

    /// Fills children, attributes and simple content from a complexType (or extension) node.
    fn content(&mut self, node: &'a Node, schema: usize, ct: &mut ComplexType) -> Result<(), WsdlError> {
        for child in node.children.iter().filter(|c| c.ns == XSD) {
            match child.local.as_str() {
                "sequence" | "all" | "choice" => {
                    ct.compositor = match child.local.as_str() {
                        "all" => Compositor::All,
                        "choice" => Compositor::Choice,
                        _ => Compositor::Sequence,
                    };
                    self.particles(child, schema, ct, false)?;
                }
                "attribute" => ct.attributes.push(self.attribute(child)?),
                "attributeGroup" => self.attribute_group(child, ct, 0)?,
                "group" => self.particles(child, schema, ct, false)?,
                "anyAttribute" | "annotation" => {}
                "complexContent" | "simpleContent" => {
                    let Some(derive) = child
                        .children
                        .iter()
                        .find(|c| c.ns == XSD && (c.local == "extension" || c.local == "restriction"))
                    else {
                        continue;
                    };
                    let base = derive.attr("base").map(|b| derive.resolve_qname(b));
                    if base.as_ref().is_some_and(|(ns, local)| ns == SOAP_ENC && local == "Array") {
                        ct.array_item = Some(Box::new(self.soap_array_item(derive, schema)?));
                        continue;
                    }
                    if child.local == "simpleContent" {
                        if let Some(base) = &base {
                            ct.simple_content = Some(self.simple_content_base(derive, base)?);
                        }
                    } else if derive.local == "extension"
                        && let Some(base) = &base
                    {
                        self.inherit(derive, base, ct)?;
                    }
                    self.content(derive, schema, ct)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn simple_content_base(&mut self, at: &'a Node, base: &(String, String)) -> Result<Arc<SimpleType>, WsdlError> {
        if let Some(&(schema, node)) = self.complex.get(base) {
            let id = match self.named_complex_ids.get(base) {
                Some(&id) => id,
                None => self.complex_type(node, schema, Some(base.clone()))?,
            };
            return Ok(self.set.types[id]
                .simple_content
                .clone()
                .unwrap_or_else(|| Arc::new(SimpleType::builtin(Builtin::String))));
        }
        self.named_simple_type(at, base)
    }

    /// A local element particle as children: the element itself, or for a `ref=` to the head
    /// of a substitution group, the head (unless abstract) and every member, transitively,
    /// each with the particle's occurrence.
    fn substitution_group(&mut self, node: &'a Node, schema: usize) -> Result<Vec<Element>, WsdlError> {
        let head = node.attr("ref").map(|r| node.resolve_qname(r));
        let Some(head) = head.filter(|h| self.substitutes.contains_key(h)) else {
            return Ok(vec![self.element(node, schema, false)?]);
        };
        let mut keys = vec![head.clone()];
        let mut i = 0;
        while i < keys.len() && keys.len() < 512 {
            let more: Vec<(String, String)> = self.substitutes.get(&keys[i]).cloned().unwrap_or_default();
            keys.extend(more.into_iter().filter(|k| !keys.contains(k)).collect::<Vec<_>>());
            i += 1;
        }
        let min = occurs(node.attr("minOccurs"), 1).unwrap_or(1);
        let max = occurs(node.attr("maxOccurs"), 1);
        let mut out = Vec::new();
        self.guard(node)?;
        for key in keys {
            let Some(&(schema, decl)) = self.elements.get(&key) else { continue };
            if decl.attr("abstract") == Some("true") {
                continue;
            }
            let mut el = self.element(decl, schema, true)?;
            el.min_occurs = min;
            el.max_occurs = max;
            out.push(el);
        }
        self.depth -= 1;
        Ok(out)
    }

    /// The item of a `soapenc:Array` restriction: from `wsdl:arrayType="tns:T[]"` on its
    /// `soapenc:arrayType` attribute, else from a declared item element, else any type.
    fn soap_array_item(&mut self, derive: &'a Node, schema: usize) -> Result<Element, WsdlError> {
        let declared = derive
            .children
            .iter()
            .filter(|c| c.ns == XSD && matches!(c.local.as_str(), "sequence" | "all"))
            .find_map(|g| g.child(XSD, "element"));
        let array_type = derive.children_named(XSD, "attribute").find_map(|a| {
            a.attrs
                .iter()
                .find(|(k, _)| k.as_str() != "ref" && k.rsplit(':').next() == Some("arrayType"))
                .map(|(_, v)| (a, v.split('[').next().unwrap_or("").to_string()))
        });
        if let Some((at, qname)) = array_type.filter(|(_, q)| !q.is_empty()) {
            let key = at.resolve_qname(&qname);
            return Ok(array_item(self.type_ref(at, &key)?));
        }
        if let Some(el) = declared {
            let mut item = self.element(el, schema, false)?;
            item.max_occurs = None;
            item.min_occurs = 0;
            return Ok(item);
        }
        Ok(array_item(TypeRef::Simple(Arc::new(SimpleType::builtin(Builtin::Any)))))
    }

    /// The attributes of a named `attributeGroup` (`ref=`), nested groups included.
    fn attribute_group(&mut self, node: &'a Node, ct: &mut ComplexType, depth: usize) -> Result<(), WsdlError> {
        let target = match node.attr("ref") {
            Some(r) => {
                let key = node.resolve_qname(r);
                self.attribute_groups
                    .get(&key)
                    .map(|&(_, n)| n)
                    .ok_or_else(|| invalid(node, format!("attributeGroup {r:?} is not declared")))?
            }
            None => node,
        };
        if depth > 32 {
            return Err(invalid(node, "attribute groups nest more than 32 levels (a cycle?)"));
        }
        for child in target.children.iter().filter(|c| c.ns == XSD) {
            match child.local.as_str() {
                "attribute" => ct.attributes.push(self.attribute(child)?),
                "attributeGroup" => self.attribute_group(child, ct, depth + 1)?,
                _ => {}
            }
            too_many(child, ct)?;
        }
        Ok(())
    }

    /// complexContent extension: the base's children and attributes come first.
    fn inherit(&mut self, at: &'a Node, base: &(String, String), ct: &mut ComplexType) -> Result<(), WsdlError> {
        if base.0 == XSD {
            return Ok(()); // anyType base: nothing to inherit
        }
        self.guard(at)?;
        let TypeRef::Complex(id) = self.type_ref(at, base)? else {
            return Err(invalid(at, "complexContent extends a simple type"));
        };
        self.depth -= 1;
        let base_ct = self.set.types[id].clone();
        ct.children.extend(base_ct.children);
        ct.attributes.extend(base_ct.attributes);
        ct.open |= base_ct.open;
        Ok(())
    }

    fn particles(
        &mut self,
        group: &'a Node,
        schema: usize,
        ct: &mut ComplexType,
        optional: bool,
    ) -> Result<(), WsdlError> {
        // Inside a choice, or a group that may be absent, every element is optional.
        let optional = optional || group.local == "choice" || group.attr("minOccurs") == Some("0");
        let repeated = occurs(group.attr("maxOccurs"), 1) != Some(1);
        if group.local == "group" {
            // A named model group (`<xsd:group ref=…>`): its one compositor, inlined.
            let Some(r) = group.attr("ref") else { return Ok(()) };
            let key = group.resolve_qname(r);
            let &(s, def) =
                self.groups.get(&key).ok_or_else(|| invalid(group, format!("group {r:?} is not declared")))?;
            self.guard(group)?;
            for inner in
                def.children.iter().filter(|c| c.ns == XSD && matches!(c.local.as_str(), "sequence" | "choice" | "all"))
            {
                let mut copy = ComplexType::default();
                self.particles(inner, s, &mut copy, optional)?;
                for mut el in copy.children {
                    if repeated {
                        el.max_occurs = None;
                    }
                    ct.children.push(el);
                }
                ct.open |= copy.open;
                too_many(group, ct)?;
            }
            self.depth -= 1;
            return Ok(());
        }
        for child in group.children.iter().filter(|c| c.ns == XSD) {
            match child.local.as_str() {
                "element" => {
                    let group = self.substitution_group(child, schema)?;
                    // A head with substitutes is a choice among them (and itself unless abstract).
                    let choice = group.len() > 1;
                    for mut el in group {
                        if optional || choice {
                            el.min_occurs = 0;
                        }
                        if repeated {
                            el.max_occurs = None;
                        }
                        ct.children.push(el);
                    }
                    too_many(child, ct)?;
                }
                "sequence" | "choice" | "all" | "group" => self.particles(child, schema, ct, optional)?,
                "any" => ct.open = true,
                _ => {}
            }
        }
        Ok(())
    }

    fn attribute(&mut self, node: &'a Node) -> Result<Attribute, WsdlError> {
        let name = node.attr("name").or(node.attr("ref")).unwrap_or("").rsplit(':').next().unwrap_or("").to_string();
        let ty = match (node.attr("type"), node.child(XSD, "simpleType")) {
            (Some(t), _) => self.named_simple_type(node, &node.resolve_qname(t))?,
            (None, Some(st)) => Arc::new(self.simple_type(st, None)?),
            (None, None) => Arc::new(SimpleType::builtin(Builtin::String)),
        };
        Ok(Attribute { json_name: self.json_name(&name), name, ty, required: node.attr("use") == Some("required") })
    }
}

/// Stops a type from growing past [`MAX_PARTICLES`] while groups are expanded.
fn too_many(at: &Node, ct: &ComplexType) -> Result<(), WsdlError> {
    let total = ct.children.len() + ct.attributes.len();
    if total > MAX_PARTICLES {
        return Err(invalid(
            at,
            format!("a type with over {MAX_PARTICLES} elements and attributes (exponential group nesting?)"),
        ));
    }
    Ok(())
}

/// The `{ns}name` of the type a named complexType derives from (complexContent only).
pub(super) fn derivation_base(ct: &Node) -> Option<(String, String)> {
    let content = ct.child(XSD, "complexContent")?;
    let derive = content.child(XSD, "extension").or_else(|| content.child(XSD, "restriction"))?;
    let base = derive.resolve_qname(derive.attr("base")?);
    (base.0 != XSD && base.0 != SOAP_ENC).then_some(base)
}

/// A built-in simple type (XSD, or SOAP-encoding's same-named wrappers), named in XSD so
/// rpc/encoded values can carry `xsi:type="xsd:…"`.
fn builtin_type(at: &Node, key: &(String, String)) -> Result<Arc<SimpleType>, WsdlError> {
    let b = Builtin::from_xsd(&key.1).ok_or_else(|| invalid(at, format!("unknown XSD built-in type {:?}", key.1)))?;
    Ok(Arc::new(SimpleType { name: Some(format!("{{{XSD}}}{}", key.1)), ..SimpleType::builtin(b) }))
}

/// The member element of a SOAP-encoded array (`<item>`, any name accepted on decode).
fn array_item(ty: TypeRef) -> Element {
    Element {
        name: "item".into(),
        json_name: "item".into(),
        namespace: None,
        ty,
        min_occurs: 0,
        max_occurs: None,
        nillable: true,
        doc: None,
    }
}

fn apply_facets(f: &mut Facets, restriction: &Node) {
    // Patterns of one derivation step are alternatives; each step's set must hold (AND).
    let patterns: Vec<&str> = restriction
        .children
        .iter()
        .filter(|c| c.ns == XSD && c.local == "pattern")
        .filter_map(|c| c.attr("value"))
        .collect();
    if !patterns.is_empty() {
        let alternatives =
            patterns.iter().map(|p| format!("(?:{})", xsd_regex::translate(p))).collect::<Vec<_>>().join("|");
        // XSD regexes are anchored. One Rust's regex still cannot read (class subtraction, a
        // rare block name) is left unchecked rather than refused: the ERP checks it anyway.
        if let Ok(re) = regex::Regex::new(&format!("^(?:{alternatives})$")) {
            f.patterns.push(re);
        }
    }
    for facet in restriction.children.iter().filter(|c| c.ns == XSD) {
        let value = facet.attr("value").unwrap_or("");
        let num = || value.trim().parse().ok();
        match facet.local.as_str() {
            "enumeration" => f.enumeration.push(value.to_string()),
            "length" => f.length = num(),
            "minLength" => f.min_length = num(),
            "maxLength" => f.max_length = num(),
            "minInclusive" => f.min_inclusive = Some(value.to_string()),
            "maxInclusive" => f.max_inclusive = Some(value.to_string()),
            "totalDigits" => f.total_digits = value.trim().parse().ok(),
            "fractionDigits" => f.fraction_digits = value.trim().parse().ok(),
            _ => {}
        }
    }
}

/// Parses minOccurs/maxOccurs; `None` means unbounded.
fn occurs(value: Option<&str>, default: u32) -> Option<u32> {
    match value.map(str::trim) {
        None => Some(default),
        Some("unbounded") => None,
        Some(v) => Some(v.parse().unwrap_or(default)),
    }
}

fn documentation(node: &Node) -> Option<String> {
    let ann = node.child(XSD, "annotation")?;
    let doc = ann.child(XSD, "documentation")?;
    Some(doc.text.trim().to_string()).filter(|d| !d.is_empty())
}
